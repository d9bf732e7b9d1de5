//! The member's usage record (使用记录): every verification of their codes.

use crate::model::UsageEntry;
use crate::store::Store;

use super::{Liangma, Member, ServiceError};

impl<S: Store> Liangma<S> {
    /// The member's usage record, newest first.
    pub async fn usage(&self, member: &Member) -> Result<Vec<UsageEntry>, ServiceError> {
        Ok(self.store.usage(self.member_subject(member)?).await?)
    }
}

//! The member's usage record (使用记录): every verification of their codes.

use crate::model::UsageEntry;
use crate::store::Store;

use super::{Liangma, Member, ServiceError};

impl<S: Store> Liangma<S> {
    /// The member's usage record, newest first.
    pub async fn usage(&self, member: &Member) -> Result<Vec<UsageEntry>, ServiceError> {
        let entries = self.store.usage(self.member_subject(member)?).await?;
        Ok(self.retained(entries))
    }

    /// The entries within the retention period.
    pub(super) fn retained(&self, mut entries: Vec<UsageEntry>) -> Vec<UsageEntry> {
        let retention = i64::try_from(self.settings.usage_retention_seconds).unwrap_or(i64::MAX);
        let oldest = self.clock.now().unix().saturating_sub(retention);
        entries.retain(|entry| entry.at.unix() >= oldest);
        entries
    }
}

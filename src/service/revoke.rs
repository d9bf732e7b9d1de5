//! Revocation: a member withdraws one of their live codes issued here (a lost phone).

use crate::code::CodeId;
use crate::store::Store;

use super::{CODE_MARK_SECONDS, Liangma, Member, ServiceError};

/// A revocation, validated.
#[derive(Debug, Clone)]
pub struct RevokeCommand {
    /// The member (authenticated by the home centre's app).
    pub member: Member,
    /// One of their codes.
    pub code_id: CodeId,
}

impl<S: Store> Liangma<S> {
    /// Revokes one of the member's codes.
    pub async fn revoke_code(&self, command: RevokeCommand) -> Result<(), ServiceError> {
        let subject = self.member_subject(&command.member)?;
        if self.store.revoke(subject, command.code_id, self.clock.now(), CODE_MARK_SECONDS).await? {
            Ok(())
        } else {
            Err(ServiceError::NoLiveCode)
        }
    }
}

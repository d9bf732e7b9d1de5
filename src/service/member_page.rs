//! The member's code page: the home centre's backend opens a short-lived session for a member it authenticated; the page then shows codes, the usage record and revocation for that member only, never handling an ID number.

use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::code::CodeId;
use crate::model::{Subject, UsageEntry};
use crate::store::Store;

use super::issue::CodeRequest;
use super::{CODE_MARK_SECONDS, IssuedCode, Liangma, Member, ServiceError};

/// A session's lifetime when the backend asks for none: one visit to the page.
pub const DEFAULT_SESSION_SECONDS: u32 = 900;
/// The longest session a backend may open.
pub const MAX_SESSION_SECONDS: u32 = 3_600;

/// A session the backend hands to the page (in the page address's fragment, which browsers
/// never send to servers or put in referrers).
#[derive(Debug, Clone)]
pub struct MemberSession {
    /// 64 hex digits; whoever holds it acts for the member until it expires.
    pub token: String,
    /// When it ends.
    pub expires_at: Timestamp,
}

/// The store keeps only a hash of the token: a copy of the store opens no session.
fn session_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl<S: Store> Liangma<S> {
    /// Opens a session for a member of a centre this deployment issues for.
    pub async fn open_member_session(
        &self,
        member: &Member,
        lifetime_seconds: Option<u32>,
    ) -> Result<MemberSession, ServiceError> {
        let subject = self.member_subject(member)?;
        let lifetime = lifetime_seconds.unwrap_or(DEFAULT_SESSION_SECONDS);
        if !(60..=MAX_SESSION_SECONDS).contains(&lifetime) {
            return Err(ServiceError::invalid("lifetime_seconds", format!("between 60 and {MAX_SESSION_SECONDS}")));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| ServiceError::Internal(format!("random source: {e}")))?;
        let token = hex::encode(secret);
        self.store.put_session(&session_key(&token), subject, u64::from(lifetime)).await?;
        Ok(MemberSession { token, expires_at: self.clock.now().plus(i64::from(lifetime)) })
    }

    /// The member a session acts for.
    async fn session_subject(&self, token: &str) -> Result<Subject, ServiceError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ServiceError::NoSession);
        }
        self.store.session(&session_key(token)).await?.ok_or(ServiceError::NoSession)
    }

    /// A new code for the session's member, with its QR.
    pub async fn show_code(&self, token: &str, request: CodeRequest) -> Result<IssuedCode, ServiceError> {
        let subject = self.session_subject(token).await?;
        self.issue_to(subject, request).await
    }

    /// The session's member's usage record, newest first.
    pub async fn my_usage(&self, token: &str) -> Result<Vec<UsageEntry>, ServiceError> {
        let entries = self.store.usage(self.session_subject(token).await?).await?;
        Ok(self.retained(entries))
    }

    /// Revokes one of the session's member's codes.
    pub async fn revoke_my_code(&self, token: &str, code_id: CodeId) -> Result<(), ServiceError> {
        let subject = self.session_subject(token).await?;
        if self.store.revoke(subject, code_id, self.clock.now(), CODE_MARK_SECONDS).await? {
            Ok(())
        } else {
            Err(ServiceError::NoLiveCode)
        }
    }
}

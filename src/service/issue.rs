//! Issuance: the member's current registry status signed into a code, noted as issued here (for revocation) with its digits, and optionally drawn as a QR image.

use crate::code::digits::Digits;
use crate::code::{CentreCode, Claims, CodeId, Purpose, qr};
use crate::issue::{IssueError, IssueRequest};
use crate::model::Subject;
use crate::store::Store;

use super::{Liangma, Member, ServiceError};

/// QR image format for issuance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrFormat {
    /// PNG bytes.
    Png,
    /// SVG document.
    Svg,
}

/// A rendered QR image.
#[derive(Debug, Clone)]
pub enum QrImage {
    /// PNG bytes.
    Png(Vec<u8>),
    /// SVG document.
    Svg(String),
}

/// A code issued through the service.
#[derive(Debug, Clone)]
pub struct IssuedCode {
    /// The text form.
    pub text: String,
    /// The digits form, unless the caller did without.
    pub digits: Option<Digits>,
    /// Its claims.
    pub claims: Claims,
    /// The QR image, if asked for.
    pub qr: Option<QrImage>,
}

/// What a code is to be, whoever it is for.
#[derive(Debug, Clone, Copy)]
pub struct CodeRequest {
    /// What the code is for.
    pub purpose: Purpose,
    /// Only centre that may accept it.
    pub audience: Option<CentreCode>,
    /// Requested lifetime in seconds; `None` = the configured lifetime.
    pub lifetime_seconds: Option<u32>,
    /// QR image wanted.
    pub qr: Option<QrFormat>,
    /// Digits wanted (a second Redis round trip, after signing).
    pub digits: bool,
}

/// What an issuance asks for, validated.
#[derive(Debug, Clone)]
pub struct IssueCommand {
    /// The member, of a centre this deployment issues for.
    pub member: Member,
    /// What the code is for.
    pub purpose: Purpose,
    /// Only centre that may accept it.
    pub audience: Option<CentreCode>,
    /// Requested lifetime in seconds; `None` = the configured lifetime.
    pub lifetime_seconds: Option<u32>,
    /// QR image wanted.
    pub qr: Option<QrFormat>,
    /// Digits wanted (a second Redis round trip, after signing).
    pub digits: bool,
}

impl<S: Store> Liangma<S> {
    /// Issues a code from the member's current registry status.
    pub async fn issue(&self, command: IssueCommand) -> Result<IssuedCode, ServiceError> {
        let subject = self.member_subject(&command.member)?;
        let IssueCommand { purpose, audience, lifetime_seconds, qr, digits, .. } = command;
        self.issue_to(subject, CodeRequest { purpose, audience, lifetime_seconds, qr, digits }).await
    }

    /// Issues to `subject`, a member of a centre this deployment issues for.
    pub(super) async fn issue_to(&self, subject: Subject, command: CodeRequest) -> Result<IssuedCode, ServiceError> {
        let issuer = self.issuer(subject.centre)?;
        let lifetime = command.lifetime_seconds.unwrap_or(self.settings.code_lifetime_seconds);
        if !(1..=self.settings.code_lifetime_seconds).contains(&lifetime) {
            let most = self.settings.code_lifetime_seconds;
            return Err(ServiceError::invalid("lifetime_seconds", format!("between 1 and {most}")));
        }
        let request = IssueRequest { purpose: command.purpose, audience: command.audience, lifetime_seconds: lifetime };
        let code_id = CodeId::random().map_err(|e| ServiceError::Internal(format!("random source: {e}")))?;
        // The issued mark (so the member can revoke the code) goes with the read, before the
        // code exists: it outlives the code, and one left by a failed issuance names nothing.
        let record = self
            .store
            .mark_issued_and_get(subject, code_id, u64::from(lifetime))
            .await?
            .ok_or(ServiceError::NotPublished(subject.centre))?;
        let now = self.clock.now();
        let trust = self.trust();
        let issued = issuer
            .issue_claims(trust.usable_at(now)?, subject.reference, record.status, &request, now, code_id)
            .map_err(|error| match error {
                IssueError::Random(_) | IssueError::IssueTime | IssueError::TooLarge(_) => {
                    ServiceError::Internal(error.to_string())
                }
                IssueError::Lifetime => ServiceError::invalid("lifetime_seconds", error),
                IssueError::KeyNotPublished(_)
                | IssueError::KeyRevoked(_)
                | IssueError::OutsideKeyWindow { .. }
                | IssueError::OutOfRange(_) => ServiceError::CannotSign(error),
            })?;
        let digits = match command.digits {
            true => Some(self.store_digits(&issued.claims, &issued.text).await?),
            false => None,
        };
        let qr = match command.qr {
            None => None,
            Some(format) => Some(self.render_qr(issued.text.clone(), format).await?),
        };
        Ok(IssuedCode { text: issued.text, digits, claims: issued.claims, qr })
    }

    /// Fresh digits for the code, resolving to its text while it lives.
    async fn store_digits(&self, claims: &Claims, text: &str) -> Result<Digits, ServiceError> {
        // 10^15 values against at most a day of codes: a collision is rare, three in a row is not a thing.
        for _ in 0..3 {
            let digits = Digits::random().map_err(|e| ServiceError::Internal(format!("random source: {e}")))?;
            if self.store.put_digits(digits.as_str(), text, u64::from(claims.valid_for)).await? {
                return Ok(digits);
            }
        }
        Err(ServiceError::Internal("could not find free digits".into()))
    }

    /// Renders on the renderer threads (`qr_render_concurrency` of them, below the async
    /// workers' priority), so that QR work never stalls the verifications.
    async fn render_qr(&self, text: String, format: QrFormat) -> Result<QrImage, ServiceError> {
        let rendered = self.renderer.run(move || {
            let symbol = qr::encode(&text).map_err(|e| ServiceError::Internal(e.to_string()))?;
            Ok(match format {
                QrFormat::Png => QrImage::Png(qr::to_png(&symbol)),
                QrFormat::Svg => QrImage::Svg(qr::to_svg(&symbol)),
            })
        });
        rendered.await.map_err(|e| ServiceError::Internal(e.to_string()))?
    }
}

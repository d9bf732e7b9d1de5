//! The service's domain logic: the full verification pipeline (steps 1-7), issuance, registry, usage record, revocation.
//!
//! It knows nothing of gRPC or Redis: it takes validated domain values, talks to storage
//! through [`RegistryStore`] and [`CodeStore`], and returns domain results or a [`ServiceError`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::clock::{Clock, Timestamp};
use crate::code::digits::Digits;
use crate::code::envelope::MAX_VALID_FOR;
use crate::code::{CentreCode, Claims, CodeId, DepositClaims, Purpose, SubjectRef, qr};
use crate::issue::{IdNumber, IssueError, IssueRequest, Issuer};
use crate::loan::{Evaluation, House, LoanApplication, LoanPolicy, Party, Source, evaluate};
use crate::render::Renderer;
use crate::store::{
    CodeStore, CodeUse, Granted, PublishCounts, RegistryRecord, RegistryStore, StoreError, Subject, UsageEntry,
    UseOutcome,
};
use crate::trust::{TrustList, TrustListError};
use crate::verify::{Reason, VerifierPolicy, verify_offline};

/// How long a VALID verification lets its caller look up the member's live status.
pub const LOOKUP_GRANT_SECONDS: u64 = 600;
/// Used and revoked marks outlive any code: the longest validity plus the clock skew allowed.
const CODE_MARK_SECONDS: u64 = MAX_VALID_FOR as u64 + 3_600;
/// Largest registry version: Redis scripts compare versions as Lua numbers (doubles).
pub const MAX_REGISTRY_VERSION: u64 = (1 << 53) - 1;

/// The service's settings that are not storage or networking.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// This deployment as a verifier: its centre, the purposes it serves, the clock skew.
    pub policy: VerifierPolicy,
    /// Longest code lifetime in seconds (codes also end at 24:00 CST).
    pub code_lifetime_seconds: u32,
    /// Most records in one publish call.
    pub max_publish_batch: usize,
    /// QR renderer threads (each image takes about 0.1 ms of CPU), below the workers' priority.
    pub qr_render_concurrency: usize,
    /// Trust list file re-read by [`Liangma::reload_trust_list`].
    pub trust_list_path: Option<PathBuf>,
    /// The loan centre's policy for off-site loan evaluation.
    pub loan_policy: LoanPolicy,
}

/// Why a call failed. Each variant maps to one gRPC status in `grpc::status`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is wrong; the message says what, without personal data.
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller may not see this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The action is refused in the current state (e.g. signing key outside its window).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Storage is unreachable: retry later.
    #[error(transparent)]
    Unavailable(StoreError),
    /// A bug or corrupt data; logged, never shown.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => ServiceError::Unavailable(error),
            StoreError::Corrupt(message) => ServiceError::Internal(message),
        }
    }
}

/// The verdict of the full pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Authentic, in time, in scope, consumed now by this verification.
    Valid,
    /// An offline check failed.
    Rejected(Reason),
    /// The member revoked the code.
    CodeRevoked,
    /// Consumed before.
    AlreadyUsed,
    /// The digits name no live code.
    UnknownDigits,
}

impl Verdict {
    /// The name used in the API, logs and the usage record.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "VALID",
            Verdict::Rejected(reason) => reason.as_str(),
            Verdict::CodeRevoked => "CODE_REVOKED",
            Verdict::AlreadyUsed => "ALREADY_USED",
            Verdict::UnknownDigits => "UNKNOWN_DIGITS",
        }
    }
}

/// A code as the counter entered it.
#[derive(Debug, Clone)]
pub enum CodeInput {
    /// The `LM1:` text.
    Text(String),
    /// The digits form.
    Digits(String),
}

/// Everything a verification found.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The verdict.
    pub verdict: Verdict,
    /// Precise explanation where the verdict alone is not enough.
    pub detail: Option<String>,
    /// The claims, when the signature verified.
    pub claims: Option<Claims>,
    /// For VALID: the live registry record (`None` if the member has none).
    pub live: Option<RegistryRecord>,
    /// For VALID: deposit fields whose live value differs from the claim.
    pub differences: Vec<&'static str>,
    /// For ALREADY_USED: when and where it was used.
    pub previous_use: Option<(Timestamp, CentreCode)>,
    /// For VALID: lets this caller look up the live status for a while.
    pub verification_id: Option<String>,
}

impl Verification {
    fn rejected(verdict: Verdict, detail: Option<String>, claims: Option<Claims>) -> Self {
        Self { verdict, detail, claims, live: None, differences: Vec::new(), previous_use: None, verification_id: None }
    }
}

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
    /// The digits form.
    pub digits: Digits,
    /// Its claims.
    pub claims: Claims,
    /// The QR image, if asked for.
    pub qr: Option<QrImage>,
}

/// What an issuance asks for, validated.
#[derive(Debug, Clone)]
pub struct IssueCommand {
    /// Issuing centre (one configured here).
    pub centre: CentreCode,
    /// The member.
    pub id_number: IdNumber,
    /// Purpose, audience and lifetime (0 = the configured one).
    pub purpose: Purpose,
    /// Only centre that may accept it.
    pub audience: Option<CentreCode>,
    /// Requested lifetime in seconds; `None` = the configured lifetime.
    pub lifetime_seconds: Option<u32>,
    /// QR image wanted.
    pub qr: Option<QrFormat>,
}

/// One member status to publish, validated.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    /// The member (hashed, never stored).
    pub id_number: IdNumber,
    /// The name (stored masked only).
    pub name: String,
    /// The status; `registry_version` orders publications.
    pub status: DepositClaims,
}

/// A depositor in a loan evaluation.
#[derive(Debug, Clone)]
pub enum PartyInput {
    /// A code to verify (and consume) now.
    Code(CodeInput),
    /// The verification id of a VALID verification by the same caller, less than 10 minutes ago.
    Verified(String),
}

/// A loan evaluation request, validated.
#[derive(Debug, Clone)]
pub struct LoanCommand {
    /// The borrower.
    pub borrower: PartyInput,
    /// The co-borrowing spouse, if they deposit too.
    pub co_borrower: Option<PartyInput>,
    /// Total price of the house.
    pub house_price: crate::code::Fen,
    /// New or second-hand.
    pub house: House,
    /// Term asked for.
    pub requested_term_years: Option<u32>,
}

/// The service. Cheap to share behind an `Arc`.
pub struct Liangma<S> {
    store: S,
    clock: Arc<dyn Clock>,
    trust: RwLock<Arc<TrustList>>,
    issuers: BTreeMap<CentreCode, Issuer>,
    settings: ServiceSettings,
    renderer: Renderer,
}

impl<S> std::fmt::Debug for Liangma<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liangma").field("centre", &self.settings.policy.centre).finish_non_exhaustive()
    }
}

/// Masks a name for a counter screen: first character, then one `*` per other character.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.trim().chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
        None => String::new(),
    }
}

fn differences(claimed: &DepositClaims, live: &DepositClaims) -> Vec<&'static str> {
    let checks = [
        ("account_status", claimed.account_status != live.account_status),
        ("balance_fen", claimed.balance != live.balance),
        ("monthly_deposit_fen", claimed.monthly_deposit != live.monthly_deposit),
        ("continuous_months", claimed.continuous_months != live.continuous_months),
        ("loan_state", claimed.loan_state != live.loan_state),
        ("loans_used", claimed.loans_used != live.loans_used),
        ("registry_version", claimed.registry_version != live.registry_version),
    ];
    checks.into_iter().filter(|(_, differs)| *differs).map(|(name, _)| name).collect()
}

/// What a verification id names: the code verified and the grant its verification stored.
/// (No `Debug` outside tests: the grant is a secret.)
#[cfg_attr(test, derive(Debug, PartialEq, Eq))]
struct VerificationRef {
    subject: Subject,
    code_id: CodeId,
    grant: String,
}

/// The opaque id a VALID verification returns, in hex: where the grant is stored (the member's
/// storage key, so it lives in the member's Redis slot, and the code id) and 16 random bytes.
fn new_verification_id(subject: Subject, code_id: CodeId) -> Result<(String, String), ServiceError> {
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(|e| ServiceError::Internal(format!("random source: {e}")))?;
    let grant = hex::encode(secret);
    let id = format!("{:08x}{}{code_id}{grant}", subject.centre.get(), subject.reference.to_full_hex());
    Ok((id, grant))
}

fn parse_verification_id(id: &str) -> Option<VerificationRef> {
    if id.len() != 8 + 24 + 24 + 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let centre = CentreCode::new(u32::from_str_radix(&id[..8], 16).ok()?)?;
    let (mut reference, mut code_id) = ([0u8; 12], [0u8; 12]);
    hex::decode_to_slice(&id[8..32], &mut reference).ok()?;
    hex::decode_to_slice(&id[32..56], &mut code_id).ok()?;
    Some(VerificationRef {
        subject: Subject { centre, reference: SubjectRef::from_bytes(reference) },
        code_id: CodeId::from_bytes(code_id),
        grant: id[56..].to_ascii_lowercase(),
    })
}

impl<S: RegistryStore + CodeStore> Liangma<S> {
    /// The service over `store`, issuing for `issuers` and verifying against `trust`; fails
    /// only if the QR renderer threads cannot be started.
    pub fn new(
        store: S,
        clock: Arc<dyn Clock>,
        trust: TrustList,
        issuers: Vec<Issuer>,
        settings: ServiceSettings,
    ) -> std::io::Result<Self> {
        let renderer = Renderer::start(settings.qr_render_concurrency)?;
        Ok(Self {
            store,
            clock,
            trust: RwLock::new(Arc::new(trust)),
            issuers: issuers.into_iter().map(|issuer| (issuer.centre(), issuer)).collect(),
            settings,
            renderer,
        })
    }

    fn trust(&self) -> Arc<TrustList> {
        Arc::clone(&self.trust.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn issuer(&self, centre: CentreCode) -> Result<&Issuer, ServiceError> {
        self.issuers
            .get(&centre)
            .ok_or_else(|| ServiceError::InvalidArgument(format!("this deployment does not issue for centre {centre}")))
    }

    /// Steps 1-7: offline checks, then (for authentic codes) consumption, the usage record and
    /// the live status in one atomic store operation.
    pub async fn verify(&self, input: CodeInput, purpose: Option<Purpose>) -> Result<Verification, ServiceError> {
        let narrowed;
        let policy = match purpose {
            None => &self.settings.policy,
            Some(purpose) if self.settings.policy.purposes.contains(&purpose) => {
                narrowed = VerifierPolicy { purposes: vec![purpose], ..self.settings.policy.clone() };
                &narrowed
            }
            Some(purpose) => {
                return Err(ServiceError::InvalidArgument(format!("this centre does not serve purpose {purpose}")));
            }
        };
        let text = match input {
            CodeInput::Text(text) => text,
            CodeInput::Digits(typed) => match Digits::parse(&typed) {
                Err(error) => {
                    return Ok(Verification::rejected(
                        Verdict::Rejected(Reason::Malformed),
                        Some(error.to_string()),
                        None,
                    ));
                }
                Ok(digits) => match self.store.resolve_digits(digits.as_str()).await? {
                    Some(text) => text,
                    None => return Ok(Verification::rejected(Verdict::UnknownDigits, None, None)),
                },
            },
        };
        let now = self.clock.now();
        let claims = match verify_offline(&text, &self.trust(), policy, now) {
            Ok(claims) => claims,
            Err(rejection) => {
                let claims = rejection.authentic_claims.map(|claims| *claims);
                if let Some(claims) = &claims {
                    // An authentic code was shown: the member sees this query in the usage record.
                    let entry = UsageEntry {
                        at: now,
                        centre: policy.centre,
                        purpose: claims.purpose,
                        result: rejection.reason.as_str().into(),
                        code_id: claims.code_id,
                    };
                    self.store
                        .record_usage(Subject { centre: claims.issuer, reference: claims.subject }, &entry)
                        .await?;
                }
                let detail = rejection.decode_error.map(|error| error.to_string());
                return Ok(Verification::rejected(Verdict::Rejected(rejection.reason), detail, claims));
            }
        };
        let subject = Subject { centre: claims.issuer, reference: claims.subject };
        let (verification_id, grant) = new_verification_id(subject, claims.code_id)?;
        let remaining = u64::try_from(claims.expires_at().unix() - now.unix()).unwrap_or(0);
        let code_use = CodeUse {
            subject,
            code_id: claims.code_id,
            centre: policy.centre,
            purpose: claims.purpose,
            at: now,
            used_ttl_seconds: (remaining + u64::from(policy.clock_skew_seconds) + 60).max(LOOKUP_GRANT_SECONDS),
            grant,
            claims: claims.deposit,
        };
        Ok(match self.store.consume(&code_use).await? {
            UseOutcome::Consumed { live } => Verification {
                verdict: Verdict::Valid,
                detail: None,
                differences: live.as_ref().map(|live| differences(&claims.deposit, &live.status)).unwrap_or_default(),
                claims: Some(claims),
                live,
                previous_use: None,
                verification_id: Some(verification_id),
            },
            UseOutcome::AlreadyUsed { at, centre } => Verification {
                previous_use: Some((at, centre)),
                ..Verification::rejected(Verdict::AlreadyUsed, None, Some(claims))
            },
            UseOutcome::Revoked => Verification::rejected(Verdict::CodeRevoked, None, Some(claims)),
        })
    }

    /// Issues a code from the member's current registry status.
    pub async fn issue(&self, command: IssueCommand) -> Result<IssuedCode, ServiceError> {
        let issuer = self.issuer(command.centre)?;
        let subject = Subject { centre: command.centre, reference: issuer.subject_ref(&command.id_number) };
        let record = self.store.get(subject).await?.ok_or_else(|| {
            ServiceError::NotFound(format!("centre {} has published no deposit status for this member", command.centre))
        })?;
        let lifetime = command.lifetime_seconds.unwrap_or(self.settings.code_lifetime_seconds);
        if !(1..=self.settings.code_lifetime_seconds).contains(&lifetime) {
            return Err(ServiceError::InvalidArgument(format!(
                "lifetime must be between 1 and {} seconds",
                self.settings.code_lifetime_seconds
            )));
        }
        let request = IssueRequest { purpose: command.purpose, audience: command.audience, lifetime_seconds: lifetime };
        let code_id = CodeId::random().map_err(|e| ServiceError::Internal(format!("random source: {e}")))?;
        let now = self.clock.now();
        let issued = issuer.issue_claims(subject.reference, record.status, &request, now, code_id).map_err(
            |error| match error {
                IssueError::Random(_) | IssueError::IssueTime | IssueError::TooLarge(_) => {
                    ServiceError::Internal(error.to_string())
                }
                IssueError::Lifetime => ServiceError::InvalidArgument(error.to_string()),
                IssueError::KeyNotPublished(_) | IssueError::KeyRevoked(_) | IssueError::OutsideKeyWindow { .. } => {
                    ServiceError::FailedPrecondition(error.to_string())
                }
            },
        )?;
        let digits = self.store_digits(&issued.text, issued.claims.valid_for).await?;
        let qr = match command.qr {
            None => None,
            Some(format) => Some(self.render_qr(issued.text.clone(), format).await?),
        };
        Ok(IssuedCode { text: issued.text, digits, claims: issued.claims, qr })
    }

    async fn store_digits(&self, text: &str, valid_for: u32) -> Result<Digits, ServiceError> {
        // 10^15 values against at most a day of codes: a collision is rare, three in a row is not a thing.
        for _ in 0..3 {
            let digits = Digits::random().map_err(|e| ServiceError::Internal(format!("random source: {e}")))?;
            if self.store.put_digits(digits.as_str(), text, u64::from(valid_for)).await? {
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

    /// Revokes one of the member's codes.
    pub async fn revoke_code(
        &self,
        centre: CentreCode,
        id_number: &IdNumber,
        code_id: CodeId,
    ) -> Result<(), ServiceError> {
        let issuer = self.issuer(centre)?;
        let subject = Subject { centre, reference: issuer.subject_ref(id_number) };
        self.store.revoke(subject, code_id, CODE_MARK_SECONDS).await?;
        Ok(())
    }

    /// Publishes a batch of member statuses for `centre`.
    pub async fn publish(&self, centre: CentreCode, members: Vec<MemberStatus>) -> Result<PublishCounts, ServiceError> {
        let issuer = self.issuer(centre)?;
        if members.len() > self.settings.max_publish_batch {
            return Err(ServiceError::InvalidArgument(format!(
                "a batch holds at most {} records, not {}",
                self.settings.max_publish_batch,
                members.len()
            )));
        }
        let now = self.clock.now();
        let mut records = Vec::with_capacity(members.len());
        for (index, member) in members.into_iter().enumerate() {
            let version = member.status.registry_version;
            if version == 0 || version > MAX_REGISTRY_VERSION {
                return Err(ServiceError::InvalidArgument(format!(
                    "records[{index}]: registry_version must be between 1 and 2^53-1"
                )));
            }
            let subject = Subject { centre, reference: issuer.subject_ref(&member.id_number) };
            let record = RegistryRecord {
                status: member.status,
                masked_name: mask_name(&member.name),
                masked_id_number: member.id_number.masked(),
                published_at: now,
            };
            records.push((subject, record));
        }
        Ok(self.store.publish(&records).await?)
    }

    /// The live status of the member whose code the holder of `verification_id` verified.
    pub async fn lookup(&self, verification_id: &str) -> Result<Option<RegistryRecord>, ServiceError> {
        Ok(self.granted(verification_id).await?.live)
    }

    /// What a VALID verification made available to its caller for a while.
    async fn granted(&self, verification_id: &str) -> Result<Granted, ServiceError> {
        let denied = || ServiceError::PermissionDenied("unknown or expired verification id".into());
        let named = parse_verification_id(verification_id).ok_or_else(denied)?;
        let granted =
            self.store.lookup_granted(named.subject, named.code_id, &named.grant).await?.ok_or_else(denied)?;
        // Another instance's clock may run a little behind: only the end of the grant matters.
        if self.clock.now().unix() - granted.verified_at.unix() >= LOOKUP_GRANT_SECONDS as i64 {
            return Err(denied());
        }
        Ok(granted)
    }

    /// The member's usage record, newest first.
    pub async fn usage(&self, centre: CentreCode, id_number: &IdNumber) -> Result<Vec<UsageEntry>, ServiceError> {
        let issuer = self.issuer(centre)?;
        Ok(self.store.usage(Subject { centre, reference: issuer.subject_ref(id_number) }).await?)
    }

    /// Evaluates the off-site loan under this deployment's policy. Figures come from the live
    /// registry where the home centre published the member, else from the verified claims.
    pub async fn evaluate_loan(&self, command: LoanCommand) -> Result<(Evaluation, Vec<String>), ServiceError> {
        if command.house_price.0 == 0 {
            return Err(ServiceError::InvalidArgument("house_price_fen: must be positive".into()));
        }
        let mut verification_ids = Vec::new();
        let borrower = self.loan_party("borrower", command.borrower, &mut verification_ids).await?;
        let co_borrower = match command.co_borrower {
            Some(input) => Some(self.loan_party("co_borrower", input, &mut verification_ids).await?),
            None => None,
        };
        let application = LoanApplication {
            borrower,
            co_borrower,
            house_price: command.house_price,
            house: command.house,
            requested_term_years: command.requested_term_years,
        };
        Ok((evaluate(&self.settings.loan_policy, &application), verification_ids))
    }

    async fn loan_party(&self, role: &str, input: PartyInput, ids: &mut Vec<String>) -> Result<Party, ServiceError> {
        let (claims, live) = match input {
            PartyInput::Verified(id) => {
                let granted = self.granted(&id).await?;
                (granted.claims, granted.live)
            }
            PartyInput::Code(code) => {
                let verification = self.verify(code, Some(Purpose::OffsiteLoan)).await?;
                let (Verdict::Valid, Some(claims), Some(id)) =
                    (verification.verdict, verification.claims, verification.verification_id)
                else {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "{role}: the code is not valid: {}",
                        verification.verdict.as_str()
                    )));
                };
                ids.push(id);
                (claims.deposit, verification.live)
            }
        };
        Ok(match live {
            Some(record) => Party { deposit: record.status, source: Source::LiveRegistry },
            None => Party { deposit: claims, source: Source::CodeClaims },
        })
    }

    /// The trust list in force, as its JSON file form.
    pub fn trust_list_json(&self) -> String {
        self.trust().to_json()
    }

    /// Re-reads the trust list file; on any error the list in force stays.
    pub fn reload_trust_list(&self) -> Result<(usize, usize), ServiceError> {
        let path = self.settings.trust_list_path.as_ref().ok_or_else(|| {
            ServiceError::FailedPrecondition("this deployment has no trust list file to reload".into())
        })?;
        let list = TrustList::load(path).map_err(|error| match error {
            TrustListError::Io { .. } => ServiceError::FailedPrecondition(format!("trust list not reloaded: {error}")),
            _ => ServiceError::FailedPrecondition(format!("trust list not reloaded, the old one stays: {error}")),
        })?;
        let counts = (list.centres().count(), list.centres().map(|centre| centre.keys.len()).sum());
        *self.trust.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(list);
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_masked_after_the_first_character() {
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳娜娜"), "欧***");
        assert_eq!(mask_name(""), "");
    }

    #[test]
    fn verification_ids_round_trip_and_reject_tampering() {
        let subject = Subject { centre: CentreCode::new(410800).unwrap(), reference: SubjectRef::from_bytes([7; 12]) };
        let code_id = CodeId::from_bytes([9; 12]);
        let (id, grant) = new_verification_id(subject, code_id).unwrap();
        assert_eq!(parse_verification_id(&id), Some(VerificationRef { subject, code_id, grant }));
        assert_eq!(parse_verification_id(&id[1..]), None);
        assert_eq!(parse_verification_id(&id.replace(|c: char| c.is_ascii_digit(), "z")), None);
    }
}

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
    CodeStore, CodeUse, Granted, IssuedMark, PublishOutcome, PublishRejection, RegistryRecord, RegistryStore,
    RequestId, StoreError, Subject, UsageEntry, UseOutcome,
};
use crate::trust::{TrustList, TrustListError};
use crate::verify::{Reason, VerifierPolicy, verify_offline};

/// How long a VALID verification lets its caller look up the member's live status.
pub const LOOKUP_GRANT_SECONDS: u64 = 600;
/// Used and revoked marks outlive any code: the longest validity plus the clock skew allowed.
const CODE_MARK_SECONDS: u64 = MAX_VALID_FOR as u64 + 3_600;

/// The service's settings that are not storage or networking.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// This deployment as a verifier: its centre, the purposes it serves, the clock skew.
    pub policy: VerifierPolicy,
    /// Longest code lifetime in seconds (codes also end at 24:00 CST).
    pub code_lifetime_seconds: u32,
    /// Most records in one publish call.
    pub max_publish_batch: usize,
    /// Largest step by which a published record's version may exceed the stored one.
    pub max_version_step: u64,
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

/// When and where a code was consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousUse {
    /// When.
    pub at: Timestamp,
    /// The verifying centre.
    pub centre: CentreCode,
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
    pub previous_use: Option<PreviousUse>,
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

/// A loan party after the checks that consume nothing.
struct CheckedParty {
    subject: Subject,
    figures: PartyFigures,
}

enum PartyFigures {
    /// Verified before: what its grant holds.
    Granted(Granted),
    /// An authentic, acceptable code still to be consumed.
    ToConsume(Claims),
}

/// A loan evaluation and the verification ids of the codes it consumed.
#[derive(Debug, Clone)]
pub struct LoanOutcome {
    /// The evaluation.
    pub evaluation: Evaluation,
    /// Verification ids of codes verified by this evaluation, for later lookups.
    pub verification_ids: Vec<String>,
}

/// A loan evaluation request, validated.
#[derive(Debug, Clone)]
pub struct LoanCommand {
    /// The caller's request id: codes are consumed under it, so a retry does not use them twice.
    pub request_id: Option<RequestId>,
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

/// Longest member name accepted at publish, in characters (the longest names in use, of
/// minority nationalities with separating dots, are around 30).
pub const MAX_NAME_CHARS: usize = 64;

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("at most 64 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("no control characters");
    }
    Ok(())
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
    Ok((verification_id_of(subject, code_id, &grant), grant))
}

fn verification_id_of(subject: Subject, code_id: CodeId, grant: &str) -> String {
    format!("{:08x}{}{code_id}{grant}", subject.centre.get(), subject.reference.to_full_hex())
}

/// The member a code names.
fn subject_of(claims: &Claims) -> Subject {
    Subject { centre: claims.issuer, reference: claims.subject }
}

/// What steps 1-5 found.
enum Checked {
    /// Authentic and acceptable here and now: ready to consume.
    Authentic(Claims),
    /// The final answer (already in the usage record if the code was authentic).
    Rejected(Verification),
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
    /// the live status in one atomic store operation. A retry with the same `request_id` after a
    /// lost answer gets the original VALID again.
    pub async fn verify(
        &self,
        input: CodeInput,
        purpose: Option<Purpose>,
        request_id: Option<RequestId>,
    ) -> Result<Verification, ServiceError> {
        match self.check_offline(input, purpose).await? {
            Checked::Authentic(claims) => self.consume(claims, request_id).await,
            Checked::Rejected(verification) => Ok(verification),
        }
    }

    /// Steps 1-5 (after resolving digits): the claims of an authentic, acceptable code, or the
    /// rejection, already in the member's usage record if the code was authentic.
    async fn check_offline(&self, input: CodeInput, purpose: Option<Purpose>) -> Result<Checked, ServiceError> {
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
                    return Ok(Checked::Rejected(Verification::rejected(
                        Verdict::Rejected(Reason::Malformed),
                        Some(error.to_string()),
                        None,
                    )));
                }
                Ok(digits) => match self.store.resolve_digits(digits.as_str()).await? {
                    Some(text) => text,
                    None => return Ok(Checked::Rejected(Verification::rejected(Verdict::UnknownDigits, None, None))),
                },
            },
        };
        let now = self.clock.now();
        match verify_offline(&text, &self.trust(), policy, now) {
            Ok(claims) => Ok(Checked::Authentic(claims)),
            Err(rejection) => {
                let claims = rejection.authentic_claims.map(|claims| *claims);
                if let Some(claims) = &claims {
                    // An authentic code was shown: the member sees this query in the usage record.
                    let entry = UsageEntry::single(
                        now,
                        policy.centre,
                        claims.purpose,
                        rejection.reason.as_str(),
                        claims.code_id,
                    );
                    self.store.record_usage(subject_of(claims), &entry).await?;
                }
                let detail = rejection.decode_error.map(|error| error.to_string());
                Ok(Checked::Rejected(Verification::rejected(Verdict::Rejected(rejection.reason), detail, claims)))
            }
        }
    }

    /// Steps 6-7 for claims that passed steps 1-5.
    async fn consume(&self, claims: Claims, request_id: Option<RequestId>) -> Result<Verification, ServiceError> {
        let now = self.clock.now();
        let subject = subject_of(&claims);
        let (verification_id, grant) = new_verification_id(subject, claims.code_id)?;
        let remaining = u64::try_from(claims.expires_at().unix() - now.unix()).unwrap_or(0);
        let skew = u64::from(self.settings.policy.clock_skew_seconds);
        let code_use = CodeUse {
            subject,
            code_id: claims.code_id,
            centre: self.settings.policy.centre,
            request_id,
            purpose: claims.purpose,
            at: now,
            used_ttl_seconds: (remaining + skew + 60).max(LOOKUP_GRANT_SECONDS),
            grant,
            claims: claims.deposit,
        };
        let valid = |live: Option<RegistryRecord>, verification_id: String| Verification {
            verdict: Verdict::Valid,
            detail: None,
            differences: live.as_ref().map(|live| differences(&claims.deposit, &live.status)).unwrap_or_default(),
            claims: Some(claims),
            live,
            previous_use: None,
            verification_id: Some(verification_id),
        };
        Ok(match self.store.consume(&code_use).await? {
            UseOutcome::Consumed { live } => valid(live, verification_id),
            UseOutcome::Repeated { live, grant } => valid(live, verification_id_of(subject, claims.code_id, &grant)),
            UseOutcome::AlreadyUsed { at, centre } => Verification {
                previous_use: Some(PreviousUse { at, centre }),
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
        let issued = issuer
            .issue_claims(&self.trust(), subject.reference, record.status, &request, now, code_id)
            .map_err(|error| match error {
                IssueError::Random(_) | IssueError::IssueTime | IssueError::TooLarge(_) => {
                    ServiceError::Internal(error.to_string())
                }
                IssueError::Lifetime => ServiceError::InvalidArgument(error.to_string()),
                IssueError::KeyNotPublished(_)
                | IssueError::KeyRevoked(_)
                | IssueError::OutsideKeyWindow { .. }
                | IssueError::OutOfRange(_) => ServiceError::FailedPrecondition(error.to_string()),
            })?;
        let digits = self.store_issued(subject, &issued.claims, &issued.text).await?;
        let qr = match command.qr {
            None => None,
            Some(format) => Some(self.render_qr(issued.text.clone(), format).await?),
        };
        Ok(IssuedCode { text: issued.text, digits, claims: issued.claims, qr })
    }

    /// Notes the code as issued here (so its member can revoke it) with fresh digits for it.
    async fn store_issued(&self, subject: Subject, claims: &Claims, text: &str) -> Result<Digits, ServiceError> {
        // 10^15 values against at most a day of codes: a collision is rare, three in a row is not a thing.
        for _ in 0..3 {
            let digits = Digits::random().map_err(|e| ServiceError::Internal(format!("random source: {e}")))?;
            let mark = IssuedMark { subject, code_id: claims.code_id, digits: digits.as_str(), text };
            if self.store.put_issued(&mark, u64::from(claims.valid_for)).await? {
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
        if self.store.revoke(subject, code_id, CODE_MARK_SECONDS).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound("the member holds no live code with this id issued here".into()))
        }
    }

    /// Publishes a batch of member statuses for `centre`. Every record is checked before any is
    /// stored; records the store refuses (see [`PublishRejection`]) are reported by index.
    pub async fn publish(
        &self,
        centre: CentreCode,
        members: Vec<MemberStatus>,
    ) -> Result<PublishOutcome, ServiceError> {
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
            let invalid = |field: &str, problem: &dyn std::fmt::Display| {
                ServiceError::InvalidArgument(format!("records[{index}].{field}: {problem}"))
            };
            if member.status.registry_version == 0 {
                return Err(invalid("status.registry_version", &"must be at least 1"));
            }
            member.status.check_bounds().map_err(|error| invalid("status", &error))?;
            check_name(&member.name).map_err(|problem| invalid("name", &problem))?;
            let subject = Subject { centre, reference: issuer.subject_ref(&member.id_number) };
            let record = RegistryRecord {
                status: member.status,
                masked_name: mask_name(&member.name),
                masked_id_number: member.id_number.masked(),
                published_at: now,
            };
            records.push((subject, record));
        }
        let outcome = self.store.publish(&records, self.settings.max_version_step).await?;
        for (index, rejection) in &outcome.rejected {
            if *rejection == PublishRejection::StoredRecordUnreadable {
                tracing::error!(%centre, index, "stored registry record unreadable: publish refused it; repair with `liangma registry forget`");
            }
        }
        Ok(outcome)
    }

    /// The live status of the member whose code the holder of `verification_id` verified.
    pub async fn lookup(&self, verification_id: &str) -> Result<Option<RegistryRecord>, ServiceError> {
        Ok(self.granted(verification_id).await?.1.live)
    }

    /// The member and what a VALID verification made available to its caller for a while.
    async fn granted(&self, verification_id: &str) -> Result<(Subject, Granted), ServiceError> {
        let denied = || ServiceError::PermissionDenied("unknown or expired verification id".into());
        let named = parse_verification_id(verification_id).ok_or_else(denied)?;
        let granted =
            self.store.lookup_granted(named.subject, named.code_id, &named.grant).await?.ok_or_else(denied)?;
        // Another instance's clock may run a little behind: only the end of the grant matters.
        if self.clock.now().unix() - granted.verified_at.unix() >= LOOKUP_GRANT_SECONDS as i64 {
            return Err(denied());
        }
        Ok((named.subject, granted))
    }

    /// The member's usage record, newest first.
    pub async fn usage(&self, centre: CentreCode, id_number: &IdNumber) -> Result<Vec<UsageEntry>, ServiceError> {
        let issuer = self.issuer(centre)?;
        Ok(self.store.usage(Subject { centre, reference: issuer.subject_ref(id_number) }).await?)
    }

    /// Evaluates the off-site loan under this deployment's policy. Figures come from the live
    /// registry where the home centre published the member, else from the verified claims.
    /// Every party is checked (offline checks, grants, not the same member twice) before any
    /// code is consumed; codes are consumed under the request id, so a retry uses them again.
    pub async fn evaluate_loan(&self, command: LoanCommand) -> Result<LoanOutcome, ServiceError> {
        if command.house_price.0 == 0 {
            return Err(ServiceError::InvalidArgument("house_price_fen: must be positive".into()));
        }
        if command.requested_term_years == Some(0) {
            return Err(ServiceError::InvalidArgument("requested_term_years: at least 1 year".into()));
        }
        let borrower = self.check_party("borrower", command.borrower).await?;
        let co_borrower = match command.co_borrower {
            Some(input) => Some(self.check_party("co_borrower", input).await?),
            None => None,
        };
        if co_borrower.as_ref().is_some_and(|co_borrower| co_borrower.subject == borrower.subject) {
            return Err(ServiceError::InvalidArgument(
                "co_borrower: the same member as the borrower; a co-borrower is another depositor".into(),
            ));
        }
        let mut verification_ids = Vec::new();
        let request = command.request_id.as_ref();
        let borrower = self.settle_party("borrower", borrower, request, &mut verification_ids).await?;
        let co_borrower = match co_borrower {
            Some(checked) => Some(self.settle_party("co_borrower", checked, request, &mut verification_ids).await?),
            None => None,
        };
        let application = LoanApplication {
            borrower,
            co_borrower,
            house_price: command.house_price,
            house: command.house,
            requested_term_years: command.requested_term_years,
        };
        let evaluation = evaluate(&self.settings.loan_policy, &application)
            .map_err(|error| ServiceError::FailedPrecondition(format!("deposit figure out of range: {error}")))?;
        Ok(LoanOutcome { evaluation, verification_ids })
    }

    /// A loan party checked without consuming anything.
    async fn check_party(&self, role: &str, input: PartyInput) -> Result<CheckedParty, ServiceError> {
        match input {
            PartyInput::Verified(id) => {
                let (subject, granted) = self.granted(&id).await?;
                Ok(CheckedParty { subject, figures: PartyFigures::Granted(granted) })
            }
            PartyInput::Code(code) => match self.check_offline(code, Some(Purpose::OffsiteLoan)).await? {
                Checked::Authentic(claims) => {
                    Ok(CheckedParty { subject: subject_of(&claims), figures: PartyFigures::ToConsume(claims) })
                }
                Checked::Rejected(verification) => Err(ServiceError::FailedPrecondition(format!(
                    "{role}: the code is not valid: {}",
                    verification.verdict.as_str()
                ))),
            },
        }
    }

    /// Consumes a checked party's code (if it came as a code) and gives its figures.
    async fn settle_party(
        &self,
        role: &str,
        checked: CheckedParty,
        request_id: Option<&RequestId>,
        verification_ids: &mut Vec<String>,
    ) -> Result<Party, ServiceError> {
        let (claims, live) = match checked.figures {
            PartyFigures::Granted(granted) => (granted.claims, granted.live),
            PartyFigures::ToConsume(claims) => {
                let verification = self.consume(claims, request_id.map(|id| id.part(role))).await?;
                let (Verdict::Valid, Some(id)) = (verification.verdict, verification.verification_id) else {
                    let consumed = if verification_ids.is_empty() {
                        ""
                    } else {
                        "; the borrower's code was consumed by this request: repeat it with the same \
                         request_id to use it again"
                    };
                    return Err(ServiceError::FailedPrecondition(format!(
                        "{role}: the code is not valid: {}{consumed}",
                        verification.verdict.as_str()
                    )));
                };
                verification_ids.push(id);
                (claims.deposit, verification.live)
            }
        };
        Ok(match live {
            Some(record) => Party { deposit: record.status, source: Source::LiveRegistry },
            None => Party { deposit: claims, source: Source::CodeClaims },
        })
    }

    /// Whether the store answers (for health reporting).
    pub async fn store_ready(&self) -> Result<(), StoreError> {
        self.store.ping().await
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
        let list = TrustList::load(path).map_err(|error| {
            // The log names the file; the caller learns what is wrong with the list, never where
            // the server keeps its files.
            tracing::warn!(%error, "trust list not reloaded; the list in force stays");
            ServiceError::FailedPrecondition(match error {
                TrustListError::Io { .. } => {
                    "trust list not reloaded: the configured file cannot be read (see the server log); \
                     the list in force stays"
                        .into()
                }
                _ => format!("trust list not reloaded, the list in force stays: {error}"),
            })
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

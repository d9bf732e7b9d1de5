//! The use cases of the service, one file each, in the order of the data flow: verify (steps 1-7), issue, revoke, registry (publish, lookup), usage record, loan evaluation, trust list.
//!
//! It knows nothing of gRPC or Redis: it takes validated domain values ([`crate::model`]),
//! talks to storage through [`Store`], and returns domain results or a [`ServiceError`].

mod deferred;
mod error;
mod in_flight;
mod issue;
pub mod link;
mod loan;
mod member_page;
mod registry;
mod revoke;
pub mod signatures;
mod trust;
mod usage;
mod verification_id;
mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::clock::Clock;
use crate::clock::Timestamp;
use crate::code::CentreCode;
use crate::code::envelope::MAX_VALID_FOR;
use crate::issue::Issuer;
use crate::loan::LoanPolicy;
use crate::model::{IdNumber, Subject};
use crate::render::Renderer;
use crate::store::{Store, StoreError};
use crate::trust::TrustList;
use crate::trust::directory::{DirectoryError, Freshness, SignedTrustList};
use crate::verify::VerifierPolicy;

pub use error::ServiceError;
pub use issue::{CodeRequest, IssueCommand, IssuedCode, QrFormat, QrImage};
pub use loan::{LoanCommand, LoanOutcome, PartyInput};
pub use member_page::{DEFAULT_SESSION_SECONDS, MAX_SESSION_SECONDS, MemberSession};
pub use registry::{MAX_NAME_CHARS, MemberStatus, PublishCommand, mask_name};
pub use revoke::RevokeCommand;
pub use trust::TrustListSize;
pub use verify::{CodeInput, ConsumeCommand, Verification, VerifyCommand};

/// The trust list in force: a file's, or the directory's signed list (which can expire).
#[derive(Debug)]
pub enum TrustInForce {
    /// From a trust list file (or the dev setup): no freshness.
    File(TrustList),
    /// A signed list from the trust directory.
    Signed(SignedTrustList),
}

impl TrustInForce {
    /// The list, whatever its freshness.
    pub fn list(&self) -> &TrustList {
        match self {
            TrustInForce::File(list) => list,
            TrustInForce::Signed(signed) => &signed.list,
        }
    }

    /// The list, unless it is a signed list past its expiry: then verification fails closed.
    pub fn usable_at(&self, now: Timestamp) -> Result<&TrustList, ServiceError> {
        match self {
            TrustInForce::File(list) => Ok(list),
            TrustInForce::Signed(signed) => {
                signed.usable_at(now).map_err(|_| ServiceError::TrustListExpired(signed.issue.expires_at))
            }
        }
    }

    /// The signed list's sequence; `None` for a file's list.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            TrustInForce::File(_) => None,
            TrustInForce::Signed(signed) => Some(signed.issue.sequence),
        }
    }

    /// The signed list's freshness at `now`; `None` for a file's list.
    pub fn freshness(&self, now: Timestamp) -> Option<Freshness> {
        match self {
            TrustInForce::File(_) => None,
            TrustInForce::Signed(signed) => Some(signed.freshness(now)),
        }
    }
}

/// A member of a centre, as the home centre's systems name them.
#[derive(Debug, Clone)]
pub struct Member {
    /// The home centre.
    pub centre: CentreCode,
    /// The member's ID number (hashed, never stored).
    pub id_number: IdNumber,
}

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
    /// Usage record entries older than this are not shown (the store drops them later).
    pub usage_retention_seconds: u64,
    /// Purposes whose codes this centre accepts on the offline checks when the issuer's node
    /// does not answer, consuming them later (docs/federation.md). Default: none (fail closed).
    pub deferred_purposes: Vec<crate::code::Purpose>,
}

/// The service. Cheap to share behind an `Arc`.
pub struct Liangma<S> {
    store: S,
    clock: Arc<dyn Clock>,
    trust: RwLock<Arc<TrustInForce>>,
    issuers: BTreeMap<CentreCode, Issuer>,
    settings: ServiceSettings,
    renderer: Renderer,
    link: Option<Arc<dyn link::IssuerLink>>,
    in_flight: in_flight::InFlight,
    signatures: signatures::SignatureBatcher,
}

impl<S> std::fmt::Debug for Liangma<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liangma").field("centre", &self.settings.policy.centre).finish_non_exhaustive()
    }
}

impl<S: Store> Liangma<S> {
    /// The service over `store`, issuing for `issuers` and verifying against `trust`; fails
    /// only if the QR renderer threads cannot be started.
    pub fn new(
        store: S,
        clock: Arc<dyn Clock>,
        trust: TrustInForce,
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
            link: None,
            in_flight: in_flight::InFlight::default(),
            signatures: signatures::SignatureBatcher::default(),
        })
    }

    /// Consumes codes of centres this node does not issue for at their issuers' nodes.
    pub fn with_link(mut self, link: Arc<dyn link::IssuerLink>) -> Self {
        self.link = Some(link);
        self
    }

    /// The trust list in force.
    pub fn trust(&self) -> Arc<TrustInForce> {
        Arc::clone(&self.trust.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Puts a verified signed list in force, atomically, if it may replace the one in force
    /// (never an older sequence); `Ok(false)`: the same list again.
    pub fn install_signed_list(&self, offered: SignedTrustList) -> Result<bool, DirectoryError> {
        let mut in_force = self.trust.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = match in_force.as_ref() {
            TrustInForce::Signed(signed) => Some(signed),
            TrustInForce::File(_) => None,
        };
        if !offered.replaces(current)? {
            return Ok(false);
        }
        *in_force = Arc::new(TrustInForce::Signed(offered));
        Ok(true)
    }

    /// The centre this node's counters verify for.
    pub fn centre(&self) -> CentreCode {
        self.settings.policy.centre
    }

    /// Whether this node issues codes for `centre`.
    pub fn issues_for(&self, centre: CentreCode) -> bool {
        self.issuers.contains_key(&centre)
    }

    /// The clock's now.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn issuer(&self, centre: CentreCode) -> Result<&Issuer, ServiceError> {
        self.issuers.get(&centre).ok_or(ServiceError::NotIssuedHere(centre))
    }

    /// The pseudonymous subject of a member of a centre this deployment issues for.
    fn member_subject(&self, member: &Member) -> Result<Subject, ServiceError> {
        let issuer = self.issuer(member.centre)?;
        Ok(Subject { centre: member.centre, reference: issuer.subject_ref(&member.id_number) })
    }

    /// Whether the store answers (for health reporting).
    pub async fn store_ready(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}

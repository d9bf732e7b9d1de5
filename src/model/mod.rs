//! Domain values the use cases work with and the stores persist: members, registry records, verdicts, uses of codes, usage entries, publications.

mod code_state;
mod member;
mod publish;
mod verdict;

pub use code_state::{CodeUse, DeferredUse, Granted, RequestId, UsageEntry, UseOutcome};
pub use member::{IdNumber, IdNumberError, RegistryRecord, StorageKey, Subject};
pub use publish::{PublishCounts, PublishOutcome, PublishRejection};
pub use verdict::{PreviousUse, UnknownVerdict, Verdict};

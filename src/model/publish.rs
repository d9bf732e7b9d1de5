//! What a publication of deposit statuses did, record by record.

/// How a publish batch went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishCounts {
    /// Records stored.
    pub applied: u32,
    /// Records ignored because the stored version was the same or newer.
    pub ignored_not_newer: u32,
}

/// How a publish batch went: what was stored, what was older, and each record refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Records stored, and records ignored because the stored version was the same or newer.
    pub counts: PublishCounts,
    /// Records refused, by their index in the batch; retrying them unchanged cannot succeed.
    pub rejected: Vec<(usize, PublishRejection)>,
}

/// Why one record of a publish batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishRejection {
    /// Its version is more than the allowed step above the stored one (a typo or a forged
    /// version would otherwise pin the record for good).
    VersionStepTooLarge,
    /// The stored record cannot be read; an operator repairs it (docs/operations.md).
    StoredRecordUnreadable,
}

impl PublishRejection {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishRejection::VersionStepTooLarge => "VERSION_STEP_TOO_LARGE",
            PublishRejection::StoredRecordUnreadable => "STORED_RECORD_UNREADABLE",
        }
    }
}

//! The electronic code: validated claims, the canonical envelope and text form, and the QR form.

pub mod claims;
pub mod digits;
pub mod envelope;
pub mod qr;

pub use claims::{
    AccountStatus, CentreCode, Claims, CodeId, DepositClaims, Fen, KeyId, LoanState, OutOfRange, Purpose, SubjectRef,
    bounds,
};
pub use envelope::{DecodeError, DecodedCode, decode};

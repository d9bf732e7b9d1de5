//! Validated domain types of a code's claims; the wire form is `pb::v1::CodeClaims`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// A provident-fund centre, named by its 6-digit administrative division code (e.g. 410800, Jiaozuo).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CentreCode(u32);

impl CentreCode {
    /// The code if it has exactly six digits and does not start with 0.
    pub const fn new(code: u32) -> Option<Self> {
        if code >= 100_000 && code <= 999_999 { Some(Self(code)) } else { None }
    }

    /// The numeric code.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for CentreCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Six digits by construction; written by hand because every storage key and log line
        // of every call carries one, and `{:06}` costs the formatting machinery.
        let mut digits = [b'0'; 6];
        let mut rest = self.0;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        f.pad(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for CentreCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CentreCode({self})")
    }
}

/// The text is not a 6-digit centre code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a centre code is 6 digits not starting with 0, e.g. 410800")]
pub struct CentreCodeError;

impl FromStr for CentreCode {
    type Err = CentreCodeError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CentreCodeError);
        }
        text.parse().ok().and_then(Self::new).ok_or(CentreCodeError)
    }
}

impl Serialize for CentreCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CentreCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))
    }
}

/// Identifies one signing key of a centre: the first 4 bytes of SHA-256 of the public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(u32);

impl KeyId {
    /// The key id of a 32-byte ed25519 public key.
    pub fn of_public_key(public_key: &[u8; 32]) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(public_key);
        Self(u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]))
    }

    /// The id as carried in the claims (`fixed32`).
    pub const fn from_wire(value: u32) -> Self {
        Self(value)
    }

    /// The numeric value carried in the claims.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The text is not 8 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key id is 8 lowercase hex digits, e.g. 3fa2c019")]
pub struct KeyIdError;

impl FromStr for KeyId {
    type Err = KeyIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 8 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(KeyIdError);
        }
        u32::from_str_radix(text, 16).map(Self).map_err(|_| KeyIdError)
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))
    }
}

/// Length of a code id in bytes (96 bits: unguessable and collision-free at national scale).
pub const CODE_ID_LEN: usize = 12;

/// The random id of one code; what single use and revocation are keyed by.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CodeId([u8; CODE_ID_LEN]);

impl CodeId {
    /// A fresh id from the operating system's random source.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; CODE_ID_LEN];
        crate::random::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// An id with the given bytes.
    pub const fn from_bytes(bytes: [u8; CODE_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; CODE_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for CodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// Writes `bytes` in lowercase hex without allocating: code ids and subject references are
/// written into keys, states and ids on every verification.
pub(crate) fn write_hex(out: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    let mut buffer = [0u8; 64];
    for chunk in bytes.chunks(buffer.len() / 2) {
        let digits = &mut buffer[..2 * chunk.len()];
        hex::encode_to_slice(chunk, digits).map_err(|_| fmt::Error)?;
        out.write_str(std::str::from_utf8(digits).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

impl fmt::Debug for CodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodeId({self})")
    }
}

impl Serialize for CodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Length of a subject reference in bytes.
pub const SUBJECT_REF_LEN: usize = 12;

/// Pseudonymous member reference: a keyed hash of the ID number under the issuer's secret.
///
/// It links a code to the member's registry record and usage record without revealing who
/// the member is. `Display` and `Debug` show only a prefix, so logs and counter screens
/// never carry the whole reference; [`SubjectRef::to_full_hex`] is for storage keys.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectRef([u8; SUBJECT_REF_LEN]);

impl SubjectRef {
    /// A reference with the given bytes.
    pub const fn from_bytes(bytes: [u8; SUBJECT_REF_LEN]) -> Self {
        Self(bytes)
    }

    /// The reference's bytes.
    pub const fn as_bytes(&self) -> &[u8; SUBJECT_REF_LEN] {
        &self.0
    }

    /// The whole reference in hex; for storage keys, never for display.
    pub fn to_full_hex(&self) -> String {
        let mut text = String::with_capacity(2 * SUBJECT_REF_LEN);
        self.write_full_hex(&mut text).expect("a String takes every write");
        text
    }

    /// [`SubjectRef::to_full_hex`] written into `out`.
    pub fn write_full_hex(&self, out: &mut impl fmt::Write) -> fmt::Result {
        write_hex(out, &self.0)
    }
}

impl fmt::Display for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", hex::encode(&self.0[..3]))
    }
}

impl fmt::Debug for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectRef({self})")
    }
}

impl Serialize for SubjectRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Declares a closed enum with its wire number and its kebab-case name (CLI, JSON, docs).
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal, $text:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The value with this wire number, if the format defines it.
            pub const fn from_wire(value: i32) -> Option<Self> {
                match value {
                    $($wire => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// The wire number.
            pub const fn wire(self) -> i32 {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }

            /// The kebab-case name used in JSON and on the command line.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == text)
                    .ok_or_else(|| {
                        let names: Vec<_> = Self::ALL.iter().map(|value| value.as_str()).collect();
                        format!("`{text}` is not one of: {}", names.join(", "))
                    })
            }
        }
    };
}

wire_enum! {
    /// What the code is shown for.
    Purpose {
        /// 异地贷款缴存使用证明: deposit status for an off-site loan.
        OffsiteLoan = 1, "offsite-loan";
        /// 职工缴存证明: proof of deposit.
        DepositCertificate = 2, "deposit-certificate";
        /// 贷款结清证明: proof that loans are settled.
        LoanSettlement = 3, "loan-settlement";
    }
}

wire_enum! {
    /// Status of the member's account at the home centre.
    AccountStatus {
        /// 正常: paying in normally.
        Normal = 1, "normal";
        /// 封存: sealed, e.g. between employers.
        Sealed = 2, "sealed";
        /// 冻结: frozen by a court or the centre.
        Frozen = 3, "frozen";
        /// 销户: closed.
        Closed = 4, "closed";
    }
}

wire_enum! {
    /// The member's provident-fund loan situation.
    LoanState {
        /// Never had a provident-fund loan.
        None = 0, "none";
        /// A loan is being repaid.
        Outstanding = 1, "outstanding";
        /// Every loan is paid off.
        Settled = 2, "settled";
    }
}

/// An amount of money in fen (1 yuan = 100 fen); integer so that no amount is ever rounded by accident.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fen(pub u64);

impl fmt::Display for Fen {
    /// Yuan with two decimals, e.g. `20000.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl fmt::Debug for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self} yuan")
    }
}

/// The deposit status a code asserts, as the home centre's registry had it at issue time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositClaims {
    /// Account status.
    pub account_status: AccountStatus,
    /// Balance of the account.
    #[serde(rename = "balance_fen")]
    pub balance: Fen,
    /// Monthly deposit, employee and employer together.
    #[serde(rename = "monthly_deposit_fen")]
    pub monthly_deposit: Fen,
    /// Months of continuous normal deposit.
    pub continuous_months: u32,
    /// Loan situation.
    pub loan_state: LoanState,
    /// Provident-fund loans used so far.
    pub loans_used: u32,
    /// Registry version the claims were taken from.
    pub registry_version: u64,
}

/// The largest deposit figures a home centre may publish and an issuer may sign
/// (docs/code-format.md §8): with every field at its bound a code still fits a QR code of version
/// 8 at error correction M.
pub mod bounds {
    /// 10^10 fen = 100 million yuan.
    pub const MAX_BALANCE_FEN: u64 = 10_000_000_000;
    /// 10^8 fen = 1 million yuan a month.
    pub const MAX_MONTHLY_DEPOSIT_FEN: u64 = 100_000_000;
    /// 100 years.
    pub const MAX_CONTINUOUS_MONTHS: u32 = 1_200;
    /// Loans used.
    pub const MAX_LOANS_USED: u32 = 127;
    /// 2^42 - 1: millisecond timestamps fit until the year 2109.
    pub const MAX_REGISTRY_VERSION: u64 = (1 << 42) - 1;
}

/// A deposit figure above its bound in [`bounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be at most {max}")]
pub struct OutOfRange {
    /// The field, as the API and JSON name it (e.g. `balance_fen`).
    pub field: &'static str,
    /// Its largest allowed value.
    pub max: u64,
}

impl DepositClaims {
    /// Checks every figure against [`bounds`]; the first one above its bound is named.
    pub fn check_bounds(&self) -> Result<(), OutOfRange> {
        let checks = [
            ("balance_fen", self.balance.0, bounds::MAX_BALANCE_FEN),
            ("monthly_deposit_fen", self.monthly_deposit.0, bounds::MAX_MONTHLY_DEPOSIT_FEN),
            ("continuous_months", u64::from(self.continuous_months), u64::from(bounds::MAX_CONTINUOUS_MONTHS)),
            ("loans_used", u64::from(self.loans_used), u64::from(bounds::MAX_LOANS_USED)),
            ("registry_version", self.registry_version, bounds::MAX_REGISTRY_VERSION),
        ];
        match checks.into_iter().find(|(_, value, max)| value > max) {
            Some((field, _, max)) => Err(OutOfRange { field, max }),
            None => Ok(()),
        }
    }
}

/// Everything a code asserts, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// The home centre that issued and signed the code.
    pub issuer: CentreCode,
    /// Which of the issuer's keys signed it.
    pub key_id: KeyId,
    /// Random id of this code.
    pub code_id: CodeId,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Seconds from issue to expiry.
    pub valid_for: u32,
    /// What it is shown for.
    pub purpose: Purpose,
    /// The only centre that may accept it, if restricted.
    pub audience: Option<CentreCode>,
    /// The member, pseudonymously.
    pub subject: SubjectRef,
    /// The deposit status asserted.
    pub deposit: DepositClaims,
}

impl Claims {
    /// The first instant at which the code is no longer valid.
    pub const fn expires_at(&self) -> Timestamp {
        self.issued_at.plus(self.valid_for as i64)
    }
}

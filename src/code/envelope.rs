//! The canonical byte and text form of a code: `LM1:` + base45(claims ‖ signature), decoded strictly.

use ed25519_dalek::Signature;
use prost::Message;

use super::claims::{
    AccountStatus, CODE_ID_LEN, CentreCode, Claims, CodeId, DepositClaims, Fen, KeyId, LoanState, Purpose,
    SUBJECT_REF_LEN, SubjectRef,
};
use crate::clock::Timestamp;
use crate::pb::v1::CodeClaims;

/// The format version this module reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Text prefix of a version-1 code: every character is in the QR alphanumeric set.
pub const TEXT_PREFIX: &str = "LM1:";
/// Prepended to the claim bytes before signing, so that no other ed25519 message of any
/// system can be replayed as a code, and a later format version cannot be read as this one.
pub const SIGNING_DOMAIN: &[u8; 16] = b"liangma/code/v1\0";
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Largest claim encoding accepted; the largest realistic claims take 80 bytes.
pub const MAX_CLAIMS_LEN: usize = 96;
/// Largest claims an issuer signs: 80 bytes fill a QR code of version 8 at error correction M
/// (docs/code-format.md §8); verifiers accept up to [`MAX_CLAIMS_LEN`].
pub const MAX_ISSUED_CLAIMS_LEN: usize = 80;
/// Largest envelope accepted.
pub const MAX_ENVELOPE_LEN: usize = MAX_CLAIMS_LEN + SIGNATURE_LEN;
/// Longest code text accepted; longer input is rejected before any decoding work.
pub const MAX_TEXT_LEN: usize = TEXT_PREFIX.len() + MAX_ENVELOPE_LEN / 2 * 3;
/// Longest validity of a code in seconds; expiry is further capped at 24:00 CST of the issue day.
pub const MAX_VALID_FOR: u32 = 86_400;
/// Latest issue time accepted (9999-12-31T23:59:59Z), which keeps all time arithmetic exact.
pub const MAX_ISSUED_AT: u64 = 253_402_300_799;

/// Why a code text could not be decoded. [`DecodeError::UnsupportedVersion`] is its own
/// verdict; every other variant is a malformed code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input exceeds [`MAX_TEXT_LEN`]; nothing else was looked at.
    #[error("code text is {len} characters, more than the limit of {MAX_TEXT_LEN}")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
    },
    /// The input does not start with `LM<version>:`.
    #[error("code text does not start with `LM<version>:`")]
    MissingPrefix,
    /// A well-formed prefix names a format version this verifier does not implement.
    #[error("code format version {0} is not supported (this verifier reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    /// The payload is not base45: a character outside the alphabet, a length of 3n+1,
    /// or a 3-character group above 65535.
    #[error("payload is not base45")]
    Base45,
    /// The payload decodes, but is not the base45 encoding of what it decodes to.
    #[error("payload is not the canonical base45 of its bytes")]
    NonCanonicalBase45,
    /// The envelope is shorter than a signature plus one byte of claims.
    #[error("envelope of {len} bytes is too short")]
    EnvelopeTooShort {
        /// Envelope length in bytes.
        len: usize,
    },
    /// The claims exceed [`MAX_CLAIMS_LEN`].
    #[error("claims of {len} bytes exceed the limit of {MAX_CLAIMS_LEN}")]
    ClaimsTooLong {
        /// Claims length in bytes.
        len: usize,
    },
    /// The claims are not a protobuf `CodeClaims` message.
    #[error("claims are not a valid protobuf message")]
    Protobuf,
    /// The claims decode, but are not the canonical encoding (unknown fields, field order,
    /// explicit defaults, over-long varints, repeated fields).
    #[error("claims are not in canonical encoding")]
    NonCanonical,
    /// A claim is missing or out of range.
    #[error("claim `{field}` {problem}")]
    InvalidClaim {
        /// Name of the field in `CodeClaims`.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// A code split into its parts, with the claims validated but the signature not yet checked.
#[derive(Debug, Clone)]
pub struct DecodedCode {
    /// The validated claims.
    pub claims: Claims,
    /// The exact transmitted claim bytes (what the signature covers, after the domain).
    pub claims_bytes: Vec<u8>,
    /// The issuer's signature.
    pub signature: Signature,
}

impl DecodedCode {
    /// Runs `with` on the signed message (domain ‖ claim bytes) without allocating.
    pub fn with_signed_message<R>(&self, with: impl FnOnce(&[u8]) -> R) -> R {
        with_signed_message(&self.claims_bytes, with)
    }
}

/// Runs `with` on `SIGNING_DOMAIN ‖ claims_bytes`, built on the stack.
pub fn with_signed_message<R>(claims_bytes: &[u8], with: impl FnOnce(&[u8]) -> R) -> R {
    let mut message = [0u8; SIGNING_DOMAIN.len() + MAX_CLAIMS_LEN];
    let len = SIGNING_DOMAIN.len() + claims_bytes.len();
    if claims_bytes.len() > MAX_CLAIMS_LEN {
        // Only issuance can get here (decoding rejects long claims first).
        return with(&[SIGNING_DOMAIN.as_slice(), claims_bytes].concat());
    }
    message[..SIGNING_DOMAIN.len()].copy_from_slice(SIGNING_DOMAIN);
    message[SIGNING_DOMAIN.len()..len].copy_from_slice(claims_bytes);
    with(&message[..len])
}

/// The canonical claim bytes of `claims`.
pub fn encode_claims(claims: &Claims) -> Vec<u8> {
    let deposit = &claims.deposit;
    CodeClaims {
        issuer_centre: claims.issuer.get(),
        key_id: claims.key_id.get(),
        code_id: claims.code_id.as_bytes().to_vec(),
        issued_at: u64::try_from(claims.issued_at.unix()).unwrap_or(0),
        valid_for: claims.valid_for,
        purpose: claims.purpose.wire(),
        audience_centre: claims.audience.map_or(0, CentreCode::get),
        subject_ref: claims.subject.as_bytes().to_vec(),
        account_status: deposit.account_status.wire(),
        balance_fen: deposit.balance.0,
        monthly_deposit_fen: deposit.monthly_deposit.0,
        continuous_months: deposit.continuous_months,
        loan_state: deposit.loan_state.wire(),
        loans_used: deposit.loans_used,
        registry_version: deposit.registry_version,
    }
    .encode_to_vec()
}

/// The text form of a signed code.
pub fn encode_text(claims_bytes: &[u8], signature: &Signature) -> String {
    let mut envelope = Vec::with_capacity(claims_bytes.len() + SIGNATURE_LEN);
    envelope.extend_from_slice(claims_bytes);
    envelope.extend_from_slice(&signature.to_bytes());
    let mut text = String::with_capacity(TEXT_PREFIX.len() + envelope.len() / 2 * 3 + 2);
    text.push_str(TEXT_PREFIX);
    text.push_str(&base45::encode(&envelope));
    text
}

/// The RFC 9285 alphabet: a character's value is its index.
const BASE45_ALPHABET: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

/// Each byte's base45 value; `NOT_BASE45` outside the alphabet.
const BASE45_VALUES: [u8; 256] = {
    let mut values = [NOT_BASE45; 256];
    let mut index = 0;
    while index < BASE45_ALPHABET.len() {
        values[BASE45_ALPHABET[index] as usize] = index as u8;
        index += 1;
    }
    values
};
const NOT_BASE45: u8 = u8::MAX;

/// Steps 1.3 and 1.4 in one pass. The base45 crate's decoder truncates a final 2-character group
/// above 255 to a byte (several texts would decode alike) and so needed a re-encode to compare;
/// this one rejects such a group, which makes every text it accepts the only encoding of its bytes.
fn decode_base45(payload: &str) -> Result<Vec<u8>, DecodeError> {
    let characters = payload.as_bytes();
    if characters.len() % 3 == 1 {
        return Err(DecodeError::Base45);
    }
    let mut bytes = Vec::with_capacity(characters.len() / 3 * 2 + 1);
    for group in characters.chunks(3) {
        let mut value = 0u32;
        for &character in group.iter().rev() {
            let digit = BASE45_VALUES[usize::from(character)];
            if digit == NOT_BASE45 {
                return Err(DecodeError::Base45);
            }
            value = value * 45 + u32::from(digit);
        }
        match (group.len(), u16::try_from(value), u8::try_from(value)) {
            (3, Ok(pair), _) => bytes.extend_from_slice(&pair.to_be_bytes()),
            (3, Err(_), _) => return Err(DecodeError::Base45),
            (_, _, Ok(byte)) => bytes.push(byte),
            (_, _, Err(_)) => return Err(DecodeError::NonCanonicalBase45),
        }
    }
    Ok(bytes)
}

/// Decodes a code text strictly, in the order of docs/code-format.md §"Decoding".
pub fn decode(text: &str) -> Result<DecodedCode, DecodeError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(DecodeError::TooLong { len: text.len() });
    }
    let payload = strip_prefix(text)?;
    let envelope = decode_base45(payload)?;
    if envelope.len() <= SIGNATURE_LEN {
        return Err(DecodeError::EnvelopeTooShort { len: envelope.len() });
    }
    let (claims_bytes, signature_bytes) = envelope.split_at(envelope.len() - SIGNATURE_LEN);
    if claims_bytes.len() > MAX_CLAIMS_LEN {
        return Err(DecodeError::ClaimsTooLong { len: claims_bytes.len() });
    }
    let wire = CodeClaims::decode(claims_bytes).map_err(|_| DecodeError::Protobuf)?;
    if wire.encoded_len() != claims_bytes.len() || wire.encode_to_vec() != claims_bytes {
        return Err(DecodeError::NonCanonical);
    }
    let claims = validate(&wire)?;
    let signature = Signature::from_bytes(signature_bytes.try_into().expect("split at SIGNATURE_LEN"));
    Ok(DecodedCode { claims, claims_bytes: claims_bytes.to_vec(), signature })
}

fn strip_prefix(text: &str) -> Result<&str, DecodeError> {
    if let Some(payload) = text.strip_prefix(TEXT_PREFIX) {
        return Ok(payload);
    }
    // A well-formed prefix of another version gets its own verdict, so that a counter
    // knows to upgrade rather than to suspect a forgery.
    let rest = text.strip_prefix("LM").ok_or(DecodeError::MissingPrefix)?;
    let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let canonical_number = (1..=3).contains(&digits_len) && !rest.starts_with('0');
    if !canonical_number || rest.as_bytes().get(digits_len) != Some(&b':') {
        return Err(DecodeError::MissingPrefix);
    }
    let version: u32 = rest[..digits_len].parse().map_err(|_| DecodeError::MissingPrefix)?;
    Err(DecodeError::UnsupportedVersion(version))
}

fn invalid(field: &'static str, problem: &'static str) -> DecodeError {
    DecodeError::InvalidClaim { field, problem }
}

fn validate(wire: &CodeClaims) -> Result<Claims, DecodeError> {
    let issuer = CentreCode::new(wire.issuer_centre).ok_or(invalid("issuer_centre", "is not a 6-digit centre code"))?;
    if wire.key_id == 0 {
        return Err(invalid("key_id", "is missing"));
    }
    let code_id: [u8; CODE_ID_LEN] =
        wire.code_id.as_slice().try_into().map_err(|_| invalid("code_id", "is not 12 bytes"))?;
    if wire.issued_at == 0 || wire.issued_at > MAX_ISSUED_AT {
        return Err(invalid("issued_at", "is missing or after year 9999"));
    }
    let issued_at = Timestamp::from_unix(wire.issued_at as i64);
    if wire.valid_for == 0 || wire.valid_for > MAX_VALID_FOR {
        return Err(invalid("valid_for", "is not between 1 and 86400 seconds"));
    }
    if issued_at.plus(i64::from(wire.valid_for)) > issued_at.end_of_cst_day() {
        return Err(invalid("valid_for", "reaches past 24:00 China Standard Time of the issue day"));
    }
    let purpose = Purpose::from_wire(wire.purpose).ok_or(invalid("purpose", "is missing or unknown"))?;
    let audience = match wire.audience_centre {
        0 => None,
        code => Some(CentreCode::new(code).ok_or(invalid("audience_centre", "is not a 6-digit centre code"))?),
    };
    let subject: [u8; SUBJECT_REF_LEN] =
        wire.subject_ref.as_slice().try_into().map_err(|_| invalid("subject_ref", "is not 12 bytes"))?;
    let account_status =
        AccountStatus::from_wire(wire.account_status).ok_or(invalid("account_status", "is missing or unknown"))?;
    let loan_state = LoanState::from_wire(wire.loan_state).ok_or(invalid("loan_state", "is unknown"))?;
    Ok(Claims {
        issuer,
        key_id: KeyId::from_wire(wire.key_id),
        code_id: CodeId::from_bytes(code_id),
        issued_at,
        valid_for: wire.valid_for,
        purpose,
        audience,
        subject: SubjectRef::from_bytes(subject),
        deposit: DepositClaims {
            account_status,
            balance: Fen(wire.balance_fen),
            monthly_deposit: Fen(wire.monthly_deposit_fen),
            continuous_months: wire.continuous_months,
            loan_state,
            loans_used: wire.loans_used,
            registry_version: wire.registry_version,
        },
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What steps 1.3 and 1.4 accept, built from the base45 crate: decode, then re-encode.
    fn crate_strict(payload: &str) -> Option<Vec<u8>> {
        base45::decode(payload).ok().filter(|bytes| base45::encode(bytes) == payload)
    }

    proptest! {
        #[test]
        fn base45_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(decode_base45(&base45::encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn base45_accepts_exactly_the_canonical_texts(
            indexes in proptest::collection::vec(0usize..48, 0..30),
        ) {
            // Mostly alphabet characters, some outside it ('a', '#', 'é').
            let payload: String = indexes
                .iter()
                .map(|&index| BASE45_ALPHABET.get(index).map_or_else(|| ['a', '#', 'é'][index - 45], |&c| char::from(c)))
                .collect();
            prop_assert_eq!(decode_base45(&payload).ok(), crate_strict(&payload));
        }
    }

    #[test]
    fn base45_errors_follow_the_decoding_steps() {
        // A final pair above 255 (":V" = 44 + 31 × 45 = 1439) is step 1.4; a triple above 65535
        // (":::" = 91124), a length of 3n+1 and a character outside the alphabet are step 1.3.
        assert!(matches!(decode_base45("000:V"), Err(DecodeError::NonCanonicalBase45)));
        assert!(matches!(decode_base45(":::"), Err(DecodeError::Base45)));
        assert!(matches!(decode_base45("0000"), Err(DecodeError::Base45)));
        assert!(matches!(decode_base45("0a"), Err(DecodeError::Base45)));
        assert_eq!(decode_base45("BB8").unwrap(), b"AB");
    }
}

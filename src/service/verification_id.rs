//! The opaque verification id a VALID verification returns: where its lookup grant is stored and the grant's secret.

use std::fmt::Write;

use crate::code::{CentreCode, CodeId, SubjectRef};
use crate::model::Subject;

use super::ServiceError;

/// What a verification id names: the code verified and the grant its verification stored.
/// (No `Debug` outside tests: the grant is a secret.)
#[cfg_attr(test, derive(Debug, PartialEq, Eq))]
pub(super) struct VerificationRef {
    pub(super) subject: Subject,
    pub(super) code_id: CodeId,
    pub(super) grant: String,
}

/// The opaque id a VALID verification returns, in hex: where the grant is stored (the member's
/// storage key, so it lives in the member's Redis slot, and the code id) and 16 random bytes.
pub(super) fn new_verification_id(subject: Subject, code_id: CodeId) -> Result<(String, String), ServiceError> {
    let mut secret = [0u8; 16];
    crate::random::fill(&mut secret).map_err(|e| ServiceError::Internal(format!("random source: {e}")))?;
    let grant = hex::encode(secret);
    Ok((verification_id_of(subject, code_id, &grant), grant))
}

/// Hex digits of a verification id: centre (8), subject reference (24), code id (24), grant (32).
const VERIFICATION_ID_LEN: usize = 8 + 24 + 24 + 32;

pub(super) fn verification_id_of(subject: Subject, code_id: CodeId, grant: &str) -> String {
    let mut id = String::with_capacity(VERIFICATION_ID_LEN);
    write!(id, "{:08x}", subject.centre.get()).expect("a String takes every write");
    subject.reference.write_full_hex(&mut id).expect("a String takes every write");
    write!(id, "{code_id}{grant}").expect("a String takes every write");
    id
}

pub(super) fn parse_verification_id(id: &str) -> Option<VerificationRef> {
    if id.len() != VERIFICATION_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
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

#[cfg(test)]
mod tests {
    use super::*;

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

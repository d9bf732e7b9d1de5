//! Test vectors of the signed trust list (docs/code-format.md §12), frozen in
//! tests/vectors/trust-list-v1.json: the code still builds them byte for byte, and each opens to
//! its recorded outcome.

use std::path::PathBuf;

use liangma::clock::Timestamp;
use liangma::testkit::{at, trust_list};
use liangma::trust::CentreKey;
use liangma::trust::directory::{self, DirectoryError, Freshness, Issue, SIGNING_DOMAIN, SignedTrustList};
use serde_json::{Value, json};

const DIRECTORY_SEED: [u8; 32] = [0x77; 32];
const OTHER_SEED: [u8; 32] = [0x78; 32];
const SIGNED_AT: &str = "2026-11-26T09:00:00+08:00";

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/trust-list-v1.json")
}

fn issue(sequence: u64) -> Issue {
    let issued_at = at(SIGNED_AT);
    Issue { sequence, issued_at, next_update: issued_at.plus(3_600), expires_at: issued_at.plus(86_400) }
}

fn signed(sequence: u64) -> String {
    directory::sign(&trust_list(), &issue(sequence), &CentreKey::from_seed(&DIRECTORY_SEED)).unwrap()
}

/// `text` with its payload changed by `edit` and signed again with `seed`: validly signed
/// contents the directory's own tool would not make.
fn resigned(text: &str, seed: &[u8; 32], edit: impl FnOnce(String) -> String) -> String {
    let mut envelope: Value = serde_json::from_str(text).unwrap();
    let payload = edit(envelope["payload"].as_str().unwrap().to_owned());
    let mut message = SIGNING_DOMAIN.to_vec();
    message.extend_from_slice(payload.as_bytes());
    envelope["payload"] = payload.into();
    envelope["signature"] = hex::encode(CentreKey::from_seed(seed).sign(&message).to_bytes()).into();
    serde_json::to_string_pretty(&envelope).unwrap() + "\n"
}

fn case(
    name: &str,
    description: &str,
    text: String,
    now: &str,
    accepted_sequence: Option<u64>,
    outcome: &str,
) -> Value {
    json!({
        "name": name,
        "description": description,
        "text": text,
        "now": now,
        "accepted_sequence": accepted_sequence,
        "expected_outcome": outcome,
    })
}

fn build_document() -> Value {
    let directory = CentreKey::from_seed(&DIRECTORY_SEED);
    let valid = signed(7);
    let cases = vec![
        case(
            "fresh",
            "Sequence 7, verified 30 minutes after signing.",
            valid.clone(),
            "2026-11-26T09:30:00+08:00",
            None,
            "FRESH",
        ),
        case(
            "stale",
            "Past next_update (one hour), before expiry: used, with a warning.",
            valid.clone(),
            "2026-11-26T10:00:00+08:00",
            None,
            "STALE",
        ),
        case(
            "expired",
            "At expires_at (one day): refused, verification fails closed.",
            valid.clone(),
            "2026-11-27T09:00:00+08:00",
            None,
            "EXPIRED",
        ),
        case(
            "newer-than-accepted",
            "Sequence 7 where sequence 6 was accepted before.",
            valid.clone(),
            "2026-11-26T09:30:00+08:00",
            Some(6),
            "FRESH",
        ),
        case(
            "rolled-back",
            "Sequence 7 where sequence 8 was accepted before: an old list replayed.",
            valid.clone(),
            "2026-11-26T09:30:00+08:00",
            Some(8),
            "ROLLED_BACK",
        ),
        case(
            "tampered",
            "A centre's name changed in the payload after signing.",
            valid.replace("焦作市住房公积金管理中心", "焦作市住房公积金管理中心X"),
            "2026-11-26T09:30:00+08:00",
            None,
            "BAD_SIGNATURE",
        ),
        case(
            "signed-by-another-key",
            "The same payload signed by a key that is not the pinned directory key.",
            resigned(&valid, &OTHER_SEED, |payload| payload),
            "2026-11-26T09:30:00+08:00",
            None,
            "BAD_SIGNATURE",
        ),
        case(
            "other-directory",
            "Validly signed with the pinned key, but naming another directory key id.",
            resigned(&valid, &DIRECTORY_SEED, |payload| payload.replace(&directory.key_id().to_string(), "00000001")),
            "2026-11-26T09:30:00+08:00",
            None,
            "OTHER_DIRECTORY",
        ),
        case(
            "malformed",
            "Not JSON of the documented shape.",
            "{\"format\":\"liangma.signed-trust-list.v1\"}".into(),
            "2026-11-26T09:30:00+08:00",
            None,
            "MALFORMED",
        ),
    ];
    json!({
        "format": "liangma.test-vectors.trust-list.v1",
        "note": "Test keys only: their seeds are public. See docs/code-format.md §12.",
        "signing_domain_hex": hex::encode(SIGNING_DOMAIN),
        "directory_key": {
            "seed_hex": hex::encode(DIRECTORY_SEED),
            "public_key_hex": hex::encode(directory.verifying_key().as_bytes()),
            "key_id": directory.key_id().to_string(),
        },
        "cases": cases,
    })
}

fn frozen() -> Value {
    let path = vectors_path();
    if !path.exists() && std::env::var_os("LIANGMA_WRITE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&build_document()).unwrap() + "\n").unwrap();
    }
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// What a verifier that pins the directory key and accepted `accepted` before makes of `text` at `now`.
fn outcome(text: &str, now: Timestamp, accepted: Option<u64>) -> &'static str {
    let pinned = CentreKey::from_seed(&DIRECTORY_SEED).verifying_key();
    let offered = match directory::open(text, &pinned) {
        Ok(offered) => offered,
        Err(DirectoryError::BadSignature(_)) => return "BAD_SIGNATURE",
        Err(DirectoryError::OtherDirectory { .. }) => return "OTHER_DIRECTORY",
        Err(DirectoryError::Malformed(_) | DirectoryError::TooLarge(_)) => return "MALFORMED",
        Err(other) => panic!("{other}"),
    };
    let previous: Option<SignedTrustList> =
        accepted.map(|sequence| directory::open(&signed(sequence), &pinned).unwrap());
    match offered.replaces(previous.as_ref()) {
        Err(DirectoryError::RolledBack { .. }) => return "ROLLED_BACK",
        Err(other) => panic!("{other}"),
        Ok(_) => {}
    }
    match offered.freshness(now) {
        Freshness::Fresh => "FRESH",
        Freshness::Stale => "STALE",
        Freshness::Expired => "EXPIRED",
    }
}

#[test]
fn the_code_still_builds_the_frozen_directory_vectors() {
    assert_eq!(frozen(), build_document());
}

#[test]
fn every_directory_vector_opens_to_its_recorded_outcome() {
    let vectors = frozen();
    let cases = vectors["cases"].as_array().unwrap();
    for expected in ["FRESH", "STALE", "EXPIRED", "ROLLED_BACK", "BAD_SIGNATURE", "OTHER_DIRECTORY", "MALFORMED"] {
        assert!(cases.iter().any(|case| case["expected_outcome"] == expected), "no vector for {expected}");
    }
    for case in cases {
        let now = at(case["now"].as_str().unwrap());
        let got = outcome(case["text"].as_str().unwrap(), now, case["accepted_sequence"].as_u64());
        assert_eq!(got, case["expected_outcome"], "{}", case["name"]);
    }
}

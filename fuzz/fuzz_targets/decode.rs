//! Fuzzes the code decoder with arbitrary text and arbitrary envelopes; whatever decodes must be canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liangma::code::envelope::{decode, encode_claims, encode_text};

fn check(text: &str) {
    if let Ok(code) = decode(text) {
        // Canonical decoding: exactly one text per code, and the claims re-encode to the signed bytes.
        assert_eq!(encode_text(&code.claims_bytes, &code.signature), text);
        assert_eq!(encode_claims(&code.claims), code.claims_bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        // Arbitrary envelopes reach the protobuf and claim checks far more often than random text.
        Some((0, envelope)) => check(&format!("LM1:{}", base45::encode(envelope))),
        _ => {
            if let Ok(text) = std::str::from_utf8(data) {
                check(text);
            }
        }
    }
});

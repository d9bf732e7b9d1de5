//! Runs one operation N times, for instruction counting under `valgrind --tool=callgrind`
//! (deterministic, unlike wall-clock time on a shared machine). See docs/performance.md.
//!
//! Usage: verify_cost (bare|offline|decode|issue|qr-png) N

use liangma::code::{Purpose, decode, qr};
use liangma::issue::IssueRequest;
use liangma::testkit::{KEYS, SHENZHEN, at, centre, jiaozuo_issuer, key, member, trust_list};
use liangma::verify::{VerifierPolicy, verify_offline};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let count: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let trust = trust_list();
    let issuer = jiaozuo_issuer();
    let record = member();
    let shenzhen = centre(SHENZHEN);
    let request = IssueRequest { purpose: Purpose::OffsiteLoan, audience: Some(shenzhen), lifetime_seconds: 86_400 };
    let now = at("2026-11-26T09:30:00+08:00");
    let code = issuer.issue(&trust, &record, &request, now).unwrap();
    let decoded = decode(&code.text).unwrap();
    let public_key = key(&KEYS.jiaozuo_current).verifying_key();
    let message = decoded.with_signed_message(<[u8]>::to_vec);
    let policy = VerifierPolicy::any_purpose(shenzhen);
    for _ in 0..count {
        match mode.as_str() {
            "bare" => public_key.verify_strict(std::hint::black_box(&message), &decoded.signature).unwrap(),
            "offline" => {
                std::hint::black_box(verify_offline(std::hint::black_box(&code.text), &trust, &policy, now).unwrap());
            }
            "decode" => {
                std::hint::black_box(decode(std::hint::black_box(&code.text)).unwrap());
            }
            "issue" => {
                std::hint::black_box(issuer.issue(&trust, &record, &request, now).unwrap());
            }
            "qr-png" => {
                std::hint::black_box(qr::to_png(&qr::encode(std::hint::black_box(&code.text)).unwrap()));
            }
            other => panic!("unknown mode `{other}`: use bare, offline, decode, issue or qr-png"),
        }
    }
}

//! Criterion benchmarks of the code library: issue, verify (against a bare verify_strict), decode, QR rendering.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use liangma::clock::Timestamp;
use liangma::code::{CodeId, Purpose, decode, qr};
use liangma::issue::{DepositRecord, IssueRequest, Issuer};
use liangma::trust::{CentreKey, SubjectSecret, TrustList};
use liangma::verify::{VerifierPolicy, verify_offline};

const MEMBER: &str = r#"{"id_number": "11010519491231002X", "account_status": "normal", "balance_fen": 2000000,
    "monthly_deposit_fen": 150000, "continuous_months": 30, "loan_state": "none", "loans_used": 0,
    "registry_version": 7}"#;

struct Setup {
    trust: TrustList,
    issuer: Issuer,
    record: DepositRecord,
    request: IssueRequest,
    policy: VerifierPolicy,
    now: Timestamp,
}

fn setup() -> Setup {
    let at = |text| Timestamp::parse_rfc3339(text).unwrap();
    let jiaozuo = "410800".parse().unwrap();
    let shenzhen = "440300".parse().unwrap();
    let key = CentreKey::from_seed(&[0x22; 32]);
    let mut trust = TrustList::new();
    trust
        .add_key(
            jiaozuo,
            Some("焦作"),
            key.verifying_key(),
            at("2026-01-01T00:00:00+08:00"),
            at("2027-01-01T00:00:00+08:00"),
        )
        .unwrap();
    // A realistic national list: 300 other centres with two keys each.
    for index in 0..300u32 {
        for seed in [1u8, 2] {
            let mut bytes = [seed; 32];
            bytes[..4].copy_from_slice(&index.to_be_bytes());
            let other = CentreKey::from_seed(&bytes);
            let code = liangma::code::CentreCode::new(500_000 + index).unwrap();
            let name = (seed == 1).then_some("centre");
            trust
                .add_key(code, name, other.verifying_key(), at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))
                .unwrap();
        }
    }
    let issuer = Issuer::new(key, SubjectSecret::from_bytes([0x5a; 32]), &trust).unwrap();
    Setup {
        trust,
        issuer,
        record: serde_json::from_str(MEMBER).unwrap(),
        request: IssueRequest { purpose: Purpose::OffsiteLoan, audience: Some(shenzhen), lifetime_seconds: 86_400 },
        policy: VerifierPolicy::any_purpose(shenzhen),
        now: at("2026-11-26T09:30:00+08:00"),
    }
}

fn bench_issue_and_verify(c: &mut Criterion) {
    let s = setup();
    let code = s.issuer.issue(&s.trust, &s.record, &s.request, s.now).unwrap();
    let decoded = decode(&code.text).unwrap();
    let public_key = s.trust.centre(code.claims.issuer).unwrap().key(code.claims.key_id).unwrap().public_key;
    let signed_message = decoded.with_signed_message(<[u8]>::to_vec);

    let mut group = c.benchmark_group("verify");
    group.bench_function("bare_verify_strict", |b| {
        b.iter(|| public_key.verify_strict(black_box(&signed_message), black_box(&decoded.signature)).unwrap())
    });
    group.bench_function("verify_offline", |b| {
        b.iter(|| verify_offline(black_box(&code.text), &s.trust, &s.policy, s.now).unwrap())
    });
    group.bench_function("decode_only", |b| b.iter(|| decode(black_box(&code.text)).unwrap()));
    group.finish();

    let mut group = c.benchmark_group("issue");
    let code_id = CodeId::from_bytes([7; 12]);
    group.bench_function("issue", |b| {
        b.iter(|| s.issuer.issue_with_code_id(&s.trust, black_box(&s.record), &s.request, s.now, code_id).unwrap())
    });
    group.finish();
}

fn bench_qr(c: &mut Criterion) {
    let s = setup();
    let text = s.issuer.issue(&s.trust, &s.record, &s.request, s.now).unwrap().text;
    let symbol = qr::encode(&text).unwrap();
    let mut group = c.benchmark_group("qr");
    group.bench_function("encode", |b| b.iter(|| qr::encode(black_box(&text)).unwrap()));
    group.bench_function("encode_png", |b| b.iter(|| qr::to_png(&qr::encode(black_box(&text)).unwrap())));
    group.bench_function("encode_svg", |b| b.iter(|| qr::to_svg(&qr::encode(black_box(&text)).unwrap())));
    group.bench_function("render_png_only", |b| b.iter(|| qr::to_png(black_box(&symbol))));
    group.finish();
}

criterion_group!(benches, bench_issue_and_verify, bench_qr);
criterion_main!(benches);

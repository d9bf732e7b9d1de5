//! Criterion benchmarks of the code library: issue, verify (against a bare verify_strict), decode, QR rendering.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use liangma::clock::Timestamp;
use liangma::code::{CodeId, Purpose, decode, qr};
use liangma::issue::{DepositRecord, IssueRequest, Issuer};
use liangma::testkit::{KEYS, SHENZHEN, at, centre, key, member, national_trust_list, subject_secret};
use liangma::trust::TrustList;
use liangma::verify::{VerifierPolicy, verify_offline};

struct Setup {
    trust: TrustList,
    issuer: Issuer,
    record: DepositRecord,
    request: IssueRequest,
    policy: VerifierPolicy,
    now: Timestamp,
}

fn setup() -> Setup {
    let shenzhen = centre(SHENZHEN);
    // A realistic national list: 300 other centres with two keys each.
    let trust = national_trust_list(300);
    Setup {
        issuer: Issuer::new(key(&KEYS.jiaozuo_current), subject_secret(), &trust).unwrap(),
        trust,
        record: member(),
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
    // The physical limit the service is compared with (docs/performance.md): 64 distinct codes'
    // signatures in one ed25519 batch, per batch; divide by 64 for a signature's share.
    let batch: Vec<(Vec<u8>, ed25519_dalek::Signature)> = (0..64u8)
        .map(|index| {
            let code = s
                .issuer
                .issue_with_code_id(&s.trust, &s.record, &s.request, s.now, CodeId::from_bytes([index; 12]))
                .unwrap();
            let decoded = decode(&code.text).unwrap();
            (decoded.with_signed_message(<[u8]>::to_vec), decoded.signature)
        })
        .collect();
    let messages: Vec<&[u8]> = batch.iter().map(|(message, _)| message.as_slice()).collect();
    let signatures: Vec<ed25519_dalek::Signature> = batch.iter().map(|(_, signature)| *signature).collect();
    let keys = vec![public_key; batch.len()];
    group.bench_function("batch_of_64", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&messages), black_box(&signatures), &keys).unwrap())
    });
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

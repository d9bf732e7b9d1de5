//! The size budget of docs/code-format.md: the largest realistic code fits a version-8 QR code at error correction M.

use liangma::code::envelope::{decode, encode_claims};
use liangma::code::qr;
use liangma::code::{AccountStatus, Fen, LoanState, Purpose, bounds};
use liangma::issue::{DepositRecord, IssueError, IssueRequest, Issuer};

use liangma::testkit::*;

#[test]
fn the_largest_realistic_claims_fit_qr_version_8_at_ecc_m() {
    let claims = largest_claims();
    let claims_bytes = encode_claims(&claims);
    assert_eq!(claims_bytes.len(), 80, "the documented worst case is 80 bytes of claims");
    let text = seal(&KEYS.jiaozuo_current, &claims);
    assert!(text.len() <= 221, "{} characters exceed the 221 of version 8-M alphanumeric", text.len());
    let symbol = qr::encode(&text).unwrap();
    assert!(symbol.version() <= qr::MAX_DESIGN_VERSION, "version {}", symbol.version());
    assert_eq!(decode(&text).unwrap().claims, claims);
    assert_eq!(qr::read_image(&qr::to_png(&symbol)).unwrap(), vec![text]);
}

/// Every deposit figure at its bound (docs/code-format.md §8), the latest issue time of the
/// budget and the longest centre codes: the issued code still fits version 8-M.
#[test]
fn a_code_issued_for_the_largest_record_fits_version_8() {
    let record = largest_record();
    let issuer = Issuer::new(key(&KEYS.jiaozuo_current), subject_secret(), &trust_list()).unwrap();
    let request =
        IssueRequest { purpose: Purpose::LoanSettlement, audience: Some(centre("829998")), lifetime_seconds: 86_400 };
    let code = issuer.issue(&trust_list(), &record, &request, at("2026-11-26T09:30:00+08:00")).unwrap();
    assert_eq!(decode(&code.text).unwrap().claims_bytes.len(), 80);
    assert!(qr::encode(&code.text).unwrap().version() <= qr::MAX_DESIGN_VERSION);
}

/// One past any bound is refused at issue time, naming the field, so no issued code needs version 9.
#[test]
fn an_issuer_refuses_figures_above_their_bounds() {
    let issuer = Issuer::new(key(&KEYS.jiaozuo_current), subject_secret(), &trust_list()).unwrap();
    let request = IssueRequest { purpose: Purpose::OffsiteLoan, audience: None, lifetime_seconds: 86_400 };
    let now = at("2026-11-26T09:30:00+08:00");
    type Raise = fn(&mut DepositRecord);
    let above: [(&str, Raise); 5] = [
        ("balance_fen", |r| r.balance_fen.0 = bounds::MAX_BALANCE_FEN + 1),
        ("monthly_deposit_fen", |r| r.monthly_deposit_fen.0 = bounds::MAX_MONTHLY_DEPOSIT_FEN + 1),
        ("continuous_months", |r| r.continuous_months = bounds::MAX_CONTINUOUS_MONTHS + 1),
        ("loans_used", |r| r.loans_used = bounds::MAX_LOANS_USED + 1),
        ("registry_version", |r| r.registry_version = bounds::MAX_REGISTRY_VERSION + 1),
    ];
    for (field, raise) in above {
        let mut record = largest_record();
        raise(&mut record);
        match issuer.issue(&trust_list(), &record, &request, now) {
            Err(IssueError::OutOfRange(out_of_range)) => assert_eq!(out_of_range.field, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

fn largest_record() -> DepositRecord {
    DepositRecord {
        id_number: "11010519491231002X".parse().unwrap(),
        account_status: AccountStatus::Closed,
        balance_fen: Fen(bounds::MAX_BALANCE_FEN),
        monthly_deposit_fen: Fen(bounds::MAX_MONTHLY_DEPOSIT_FEN),
        continuous_months: bounds::MAX_CONTINUOUS_MONTHS,
        loan_state: LoanState::Settled,
        loans_used: bounds::MAX_LOANS_USED,
        registry_version: bounds::MAX_REGISTRY_VERSION,
    }
}

/// Every PNG we render reads back in an independent decoder (zbarimg, from the ZBar project),
/// for real codes and for payloads of every length up to version 9.
#[test]
fn zbarimg_reads_back_every_symbol() {
    let issuer = Issuer::new(key(&KEYS.jiaozuo_current), subject_secret(), &trust_list()).unwrap();
    let request =
        IssueRequest { purpose: Purpose::OffsiteLoan, audience: Some(centre(SHENZHEN)), lifetime_seconds: 86_400 };
    let mut texts: Vec<String> = (0..250)
        .map(|minute| {
            issuer
                .issue(&trust_list(), &member(), &request, at("2026-11-26T09:30:00+08:00").plus(minute * 60))
                .unwrap()
                .text
        })
        .collect();
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    texts.extend((0..250).map(|index| {
        (0..1 + index % 230)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
            })
            .collect::<String>()
    }));
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<std::path::PathBuf> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let path = dir.path().join(format!("{index:04}.png"));
            std::fs::write(&path, qr::to_png(&qr::encode(text).unwrap())).unwrap();
            path
        })
        .collect();
    let output = std::process::Command::new("zbarimg")
        .args(["--raw", "-q", "-Sdisable", "-Sqrcode.enable"])
        .args(&files)
        .output()
        .expect("zbarimg must be installed (scripts/test installs zbar-tools)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let decoded: Vec<&str> = std::str::from_utf8(&output.stdout).unwrap().lines().collect();
    assert_eq!(decoded.len(), texts.len());
    for (text, read) in texts.iter().zip(decoded) {
        assert_eq!(read, text);
    }
}

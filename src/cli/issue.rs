//! `liangma issue`: sign a member's deposit record into a code, printed as text and optionally as a QR code.

use std::io::Read;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::{EXIT_VALID, IssueArgs};
use crate::code::qr;
use crate::issue::{DepositRecord, IssueRequest, Issuer};
use crate::trust::{CentreKey, SubjectSecret, TrustList};

/// A deposit record is a few hundred bytes; anything far larger is not one.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

pub(super) fn run(args: &IssueArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let trust = TrustList::load(&args.trust)?;
    let issuer =
        Issuer::new(CentreKey::read_pem_file(&args.key)?, SubjectSecret::read_file(&args.subject_secret)?, &trust)?;
    let record = read_record(args)?;
    let request = IssueRequest { purpose: args.purpose, audience: args.audience, lifetime_seconds: args.lifetime_secs };
    let issued = issuer.issue(&trust, &record, &request, args.time.clock().now())?;
    writeln!(out, "{}", issued.text)?;
    eprintln!(
        "issued by {} key {}, code id {}, expires {}",
        issued.claims.issuer,
        issued.claims.key_id,
        issued.claims.code_id,
        issued.claims.expires_at()
    );
    if args.png.is_some() || args.svg.is_some() || args.qr {
        let symbol = qr::encode(&issued.text)?;
        if let Some(path) = &args.png {
            std::fs::write(path, qr::to_png(&symbol)).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &args.svg {
            std::fs::write(path, qr::to_svg(&symbol)).with_context(|| format!("writing {}", path.display()))?;
        }
        if args.qr {
            write!(out, "{}", qr::to_terminal(&symbol))?;
        }
        eprintln!("QR version {} at error correction M", symbol.version());
    }
    Ok(ExitCode::from(EXIT_VALID))
}

fn read_record(args: &IssueArgs) -> anyhow::Result<DepositRecord> {
    let mut json = String::new();
    let source = args.record.display().to_string();
    if source == "-" {
        std::io::stdin().take(MAX_RECORD_BYTES + 1).read_to_string(&mut json).context("reading record from stdin")?;
    } else {
        std::fs::File::open(&args.record)
            .and_then(|file| file.take(MAX_RECORD_BYTES + 1).read_to_string(&mut json))
            .with_context(|| format!("reading {source}"))?;
    }
    if json.len() as u64 > MAX_RECORD_BYTES {
        anyhow::bail!("{source}: a deposit record is at most {MAX_RECORD_BYTES} bytes");
    }
    serde_json::from_str(&json).with_context(|| format!("{source} is not a deposit record"))
}

//! `liangma verify`: offline verdicts for codes given as arguments, QR images, or scanner lines on stdin.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use serde::Serialize;

use super::{EXIT_ERROR, EXIT_INVALID, EXIT_VALID, VerifyArgs};
use crate::clock::Timestamp;
use crate::code::envelope::MAX_TEXT_LEN;
use crate::code::{Claims, Purpose, qr};
use crate::trust::TrustList;
use crate::trust::directory::{self, Freshness};
use crate::verify::{Rejection, VerifierPolicy, verify_offline};
use anyhow::Context;
use ed25519_dalek::VerifyingKey;

/// One verdict line of `--json` output.
#[derive(Serialize)]
struct VerdictView<'a> {
    /// Where the code came from: `arg 1`, `stdin line 3`, `image.png`.
    source: &'a str,
    verdict: &'static str,
    detail: Option<String>,
    expires_at: Option<Timestamp>,
    claims: Option<Claims>,
}

struct Verifier<'a> {
    trust: TrustList,
    policy: VerifierPolicy,
    now: Timestamp,
    json: bool,
    out: std::io::StdoutLock<'a>,
    all_valid: bool,
}

impl Verifier<'_> {
    fn check(&mut self, source: &str, text: &str) -> std::io::Result<()> {
        let (verdict, detail, claims) = match verify_offline(text, &self.trust, &self.policy, self.now) {
            Ok(claims) => ("VALID", None, Some(claims)),
            Err(rejection) => {
                self.all_valid = false;
                let Rejection { reason, decode_error, authentic_claims } = rejection;
                (reason.as_str(), decode_error.map(|e| e.to_string()), authentic_claims.map(|c| *c))
            }
        };
        if self.json {
            let view = VerdictView { source, verdict, detail, expires_at: claims.map(|c| c.expires_at()), claims };
            serde_json::to_writer(&mut self.out, &view)?;
            writeln!(self.out)
        } else {
            write!(self.out, "{verdict}")?;
            if let Some(detail) = detail {
                write!(self.out, " ({detail})")?;
            }
            if let Some(claims) = claims {
                write!(self.out, " {}", describe(&claims))?;
            }
            writeln!(self.out, " [{source}]")
        }
    }
}

/// Everything a counter needs, nothing that identifies the member (the subject is masked).
fn describe(claims: &Claims) -> String {
    let deposit = &claims.deposit;
    format!(
        "issuer={} key={} code={} purpose={} audience={} issued={} expires={} subject={} status={} \
         balance={} monthly={} months={} loan={} loans_used={} registry_version={}",
        claims.issuer,
        claims.key_id,
        claims.code_id,
        claims.purpose,
        claims.audience.map_or_else(|| "any".to_string(), |c| c.to_string()),
        claims.issued_at,
        claims.expires_at(),
        claims.subject,
        deposit.account_status,
        deposit.balance,
        deposit.monthly_deposit,
        deposit.continuous_months,
        deposit.loan_state,
        deposit.loans_used,
        deposit.registry_version,
    )
}

/// The trust list to verify with: the plain file, or the signed one checked against the
/// directory's key — refused if it does not verify or has expired (failing closed), used with a
/// warning once stale.
fn trust_list(args: &VerifyArgs, now: Timestamp) -> anyhow::Result<TrustList> {
    let Some(hex_key) = &args.directory_public_key else { return Ok(TrustList::load(&args.trust)?) };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut bytes).context("--directory-public-key must be 64 hex digits")?;
    let pinned = VerifyingKey::from_bytes(&bytes).context("--directory-public-key is not an ed25519 public key")?;
    let text = std::fs::read_to_string(&args.trust).with_context(|| format!("reading {}", args.trust.display()))?;
    let signed = directory::open(&text, &pinned).with_context(|| format!("{}", args.trust.display()))?;
    if signed.freshness(now) == Freshness::Stale {
        eprintln!(
            "liangma: warning: the signed trust list (sequence {}) is stale since {}; fetch a newer one",
            signed.issue.sequence, signed.issue.next_update
        );
    }
    signed.usable_at(now).cloned().with_context(|| format!("{}", args.trust.display()))
}

pub(super) fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let now = args.time.clock().now();
    let purposes = if args.purposes.is_empty() { Purpose::ALL.to_vec() } else { args.purposes.clone() };
    let mut verifier = Verifier {
        trust: trust_list(args, now)?,
        policy: VerifierPolicy { centre: args.centre, purposes, clock_skew_seconds: args.skew_secs },
        now,
        json: args.json,
        out: std::io::stdout().lock(),
        all_valid: true,
    };
    let mut had_error = false;
    for (index, code) in args.codes.iter().enumerate() {
        verifier.check(&format!("arg {}", index + 1), code)?;
    }
    for path in &args.images {
        let source = path.display().to_string();
        let texts = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| qr::read_image(&bytes).map_err(|e| e.to_string()));
        match texts {
            Ok(texts) => {
                for text in texts {
                    verifier.check(&source, &text)?;
                }
            }
            Err(error) => {
                eprintln!("liangma: {source}: {error}");
                had_error = true;
            }
        }
    }
    if args.codes.is_empty() && args.images.is_empty() {
        verify_lines(&mut verifier, std::io::stdin().lock())?;
    }
    Ok(ExitCode::from(if had_error {
        EXIT_ERROR
    } else if verifier.all_valid {
        EXIT_VALID
    } else {
        EXIT_INVALID
    }))
}

/// One code per line, as a USB scanner types it. Only the line ending is stripped: a space
/// is a base45 character and may end a code. Blank lines are skipped; a line longer than
/// any code is judged (MALFORMED) from its first bytes without being held in memory whole.
fn verify_lines(verifier: &mut Verifier<'_>, mut input: impl BufRead) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(MAX_TEXT_LEN + 2);
    let mut number = 0usize;
    loop {
        line.clear();
        let read = input.by_ref().take(MAX_TEXT_LEN as u64 + 2).read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > MAX_TEXT_LEN {
            skip_rest_of_line(&mut input)?;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        verifier.check(&format!("stdin line {number}"), &String::from_utf8_lossy(&line))?;
    }
}

fn skip_rest_of_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|b| *b == b'\n') {
            Some(end) => {
                input.consume(end + 1);
                return Ok(());
            }
            None => {
                let len = buffer.len();
                input.consume(len);
            }
        }
    }
}

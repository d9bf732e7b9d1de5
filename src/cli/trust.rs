//! `liangma trust`: publish, rotate, revoke and show keys in a trust list file.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use ed25519_dalek::VerifyingKey;

use super::{EXIT_VALID, PublicKeySource, TrustCommand};
use crate::clock::{Clock, SystemClock};
use crate::trust::directory::{self, Issue};
use crate::trust::{CentreKey, KeyStatus, TrustList};

const ONE_YEAR_SECONDS: i64 = 365 * 86_400;

pub(super) fn run(command: TrustCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let now = SystemClock.now();
    match command {
        TrustCommand::Add(args) => {
            let mut list = TrustList::load_or_empty(&args.file.trust)?;
            let public_key = public_key(&args.source)?;
            let from = args.valid_from.unwrap_or(now);
            let until = args.valid_until.unwrap_or(from.plus(ONE_YEAR_SECONDS));
            let key_id = list.add_key(args.centre, args.name.as_deref(), public_key, from, until)?;
            list.save(&args.file.trust)?;
            writeln!(out, "published key {key_id} for centre {} (signs {from} .. {until})", args.centre)?;
        }
        TrustCommand::Rotate(args) => {
            let mut list = TrustList::load(&args.file.trust)?;
            let at = args.at.unwrap_or(now);
            let until = args.valid_until.unwrap_or(at.plus(ONE_YEAR_SECONDS));
            let key_id = list.rotate(args.centre, public_key(&args.source)?, at, until)?;
            list.save(&args.file.trust)?;
            writeln!(out, "centre {} signs with key {key_id} from {at}; earlier keys stop signing then", args.centre)?;
        }
        TrustCommand::Revoke(args) => {
            let mut list = TrustList::load(&args.file.trust)?;
            list.revoke(args.centre, args.key_id)?;
            list.save(&args.file.trust)?;
            writeln!(out, "revoked key {} of centre {}: every code it signed now fails", args.key_id, args.centre)?;
        }
        TrustCommand::Sign(args) => {
            let list = TrustList::load(&args.file.trust)?;
            let key = CentreKey::read_pem_file(&args.directory_key)?;
            let issued_at = args.time.clock().now();
            let issue = Issue {
                sequence: args.sequence,
                issued_at,
                next_update: issued_at.plus(i64::from(args.next_update_secs)),
                expires_at: issued_at.plus(i64::from(args.valid_secs)),
            };
            let signed = directory::sign(&list, &issue, &key)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?;
            file.write_all(signed.as_bytes()).with_context(|| format!("writing {}", args.out.display()))?;
            writeln!(
                out,
                "signed sequence {} with directory key {} (public key {}): stale from {}, expires {}",
                issue.sequence,
                key.key_id(),
                hex::encode(key.verifying_key().as_bytes()),
                issue.next_update,
                issue.expires_at
            )?;
        }
        TrustCommand::Show(args) => {
            let list = TrustList::load(&args.trust)?;
            for centre in list.centres() {
                writeln!(out, "{} {}", centre.code, centre.name)?;
                for key in &centre.keys {
                    let state = match key.status {
                        KeyStatus::Revoked => "revoked",
                        KeyStatus::Active if key.signs_at(now) => "signing",
                        KeyStatus::Active if now < key.valid_from => "not yet signing",
                        KeyStatus::Active => "retired",
                    };
                    writeln!(out, "  {} {} .. {} {state}", key.key_id, key.valid_from, key.valid_until)?;
                }
            }
        }
    }
    Ok(ExitCode::from(EXIT_VALID))
}

fn public_key(source: &PublicKeySource) -> anyhow::Result<VerifyingKey> {
    if let Some(path) = &source.key {
        return Ok(CentreKey::read_pem_file(path)?.verifying_key());
    }
    let Some(text) = &source.public_key else { bail!("give --key or --public-key") };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).context("--public-key must be 64 hex digits")?;
    VerifyingKey::from_bytes(&bytes).context("--public-key is not a valid ed25519 public key")
}

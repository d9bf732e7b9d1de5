//! `liangma keygen`: a new signing key, and the centre's subject secret when it has none.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::{EXIT_VALID, KeygenArgs};
use crate::trust::{CentreKey, SubjectSecret};

pub(super) fn run(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let key = CentreKey::generate().context("random source")?;
    let key_path = args.out_dir.join(format!("{}-{}.pem", args.centre, key.key_id()));
    key.write_pem_file(&key_path)?;
    let secret_path = args.out_dir.join(format!("{}-subject.key", args.centre));
    let secret_note = if secret_path.exists() {
        "kept (rotation leaves subject references unchanged)"
    } else {
        SubjectSecret::generate().context("random source")?.write_file(&secret_path)?;
        "created"
    };
    writeln!(out, "key id:         {}", key.key_id())?;
    writeln!(out, "public key:     {}", hex::encode(key.verifying_key().as_bytes()))?;
    writeln!(out, "private key:    {} (mode 0600; never share it)", key_path.display())?;
    writeln!(out, "subject secret: {} ({secret_note})", secret_path.display())?;
    writeln!(
        out,
        "next: liangma trust add --trust trust.json --centre {} --name NAME --key {}",
        args.centre,
        key_path.display()
    )?;
    Ok(ExitCode::from(EXIT_VALID))
}

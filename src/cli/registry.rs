//! `liangma registry forget`: an operator deletes one member's registry record in the configured store.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::EXIT_VALID;
use crate::clock::{Clock, SystemClock};
use crate::code::CentreCode;
use crate::config::{Config, StoreBackend};
use crate::model::IdNumber;
use crate::store::RegistryStore;
use crate::store::redis::RedisStore;

pub(super) fn forget(config_path: Option<&Path>, centre: CentreCode, id_number: &str) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path, |name| std::env::var(name).ok()).context("configuration")?;
    anyhow::ensure!(
        config.store.backend == StoreBackend::Redis,
        "the memory store lives inside the serving process: restarting it forgets every record"
    );
    let id_number: IdNumber = id_number.parse().context("--id-number")?;
    // Only the centre's subject secret is needed, so this works on every kind of node (a file's
    // trust list, a directory, a node following one).
    let reference = match config.issuers.iter().find(|issuer| issuer.centre == centre) {
        Some(issuer) => crate::trust::SubjectSecret::read_file(&issuer.subject_secret)?.subject_ref(&id_number),
        None if config.is_dev_setup() => {
            let (_, issuers, _) = crate::app::identity(&config, SystemClock.now())?;
            let issuer = issuers
                .iter()
                .find(|issuer| issuer.centre() == centre)
                .with_context(|| format!("this configuration does not issue for centre {centre}"))?;
            issuer.subject_ref(&id_number)
        }
        None => anyhow::bail!("this configuration does not issue for centre {centre}"),
    };
    let subject = crate::model::Subject { centre, reference };
    let settings = config.redis_settings();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let removed = runtime.block_on(async { RedisStore::connect(&settings)?.remove(subject).await })?;
    if removed {
        println!(
            "removed the registry record of this member of {centre}; the next publication is stored whatever its version"
        );
    } else {
        println!("this member of {centre} has no registry record");
    }
    Ok(ExitCode::from(EXIT_VALID))
}

//! deploy/ stays true to the code: variable names, their values, ports and config keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use liangma::config::{Config, ENVIRONMENT};

fn read(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn liangma_variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("LIANGMA_") {
        let name: String =
            rest[start..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit()).collect();
        rest = &rest[start + name.len()..];
        names.push(name);
    }
    names
}

/// `KEY: value` lines of the compose file's liangma environment block.
fn compose_environment(compose: &str) -> BTreeMap<String, String> {
    compose
        .lines()
        .map(str::trim)
        .filter_map(|line| line.split_once(": "))
        .filter(|(key, _)| key.starts_with("LIANGMA_"))
        .map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()))
        .collect()
}

/// `KEY=value` pairs of the Dockerfile's ENV instruction.
fn dockerfile_environment(dockerfile: &str) -> BTreeMap<String, String> {
    dockerfile
        .split_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter(|(key, _)| key.starts_with("LIANGMA_"))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn load_with(environment: &BTreeMap<String, String>) -> Config {
    Config::load(None, |name| environment.get(name).cloned()).unwrap_or_else(|e| panic!("{environment:?}: {e}"))
}

#[test]
fn every_variable_in_deploy_is_one_the_service_reads() {
    for file in ["Dockerfile", "compose.yaml"] {
        for name in liangma_variables(&read(file)) {
            assert!(ENVIRONMENT.contains(&name.as_str()), "{file} sets {name}, which liangma does not read");
        }
    }
}

#[test]
fn the_environments_load_and_the_ports_agree() {
    let dockerfile = read("Dockerfile");
    let compose = read("compose.yaml");
    let image = load_with(&dockerfile_environment(&dockerfile));
    let mut composed = dockerfile_environment(&dockerfile);
    composed.extend(compose_environment(&compose));
    let service = load_with(&composed);
    assert_eq!(service.store.backend, liangma::config::StoreBackend::Redis);

    let exposed: u16 = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("EXPOSE "))
        .expect("the Dockerfile exposes the gRPC port")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(image.listen.port(), exposed);
    assert_eq!(service.listen.port(), exposed);
    assert!(!image.listen.ip().is_loopback(), "a container must listen beyond its loopback");
    let published = format!("\"{exposed}:{exposed}\"");
    assert!(compose.contains(&published), "compose publishes {published}");
    assert!(compose.contains("--appendonly\", \"yes\""), "Redis persistence is on");
}

#[test]
fn the_example_configuration_uses_only_real_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liangma.toml");
    std::fs::write(&path, read("liangma.toml")).unwrap();
    let config = Config::load(Some(&path), |_| None).unwrap();
    assert!(!config.is_dev_setup());
    assert_eq!(config.issuers.len(), 1);
    assert_eq!(config.sample_members, Some(false));
    assert_eq!(config.load_loan_policy().unwrap().centre, config.centre, "the example's policy is its own centre's");
}

//! deploy/ stays true to the code: variable names, their values, ports, config keys, and the
//! references between the Kubernetes manifests and the compose files.

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

use yaml_rust2::{Yaml, YamlLoader};

/// Every YAML document of a file under deploy/.
fn yaml(name: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

fn text_of(node: &Yaml) -> String {
    match node {
        Yaml::String(text) | Yaml::Real(text) => text.clone(),
        Yaml::Integer(number) => number.to_string(),
        Yaml::Boolean(flag) => flag.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(node: &Yaml) -> Vec<String> {
    node.as_vec().expect("a list").iter().map(text_of).collect()
}

const KUBERNETES: [&str; 5] = [
    "kubernetes/configmap.yaml",
    "kubernetes/secret.yaml",
    "kubernetes/deployment.yaml",
    "kubernetes/service.yaml",
    "kubernetes/pdb.yaml",
];

/// The Kubernetes objects by kind and name.
fn kubernetes_objects() -> BTreeMap<(String, String), Yaml> {
    let mut objects = BTreeMap::new();
    for file in KUBERNETES {
        for document in yaml(file) {
            let key = (text_of(&document["kind"]), text_of(&document["metadata"]["name"]));
            assert!(objects.insert(key.clone(), document).is_none(), "{key:?} twice");
        }
    }
    objects
}

fn labels(node: &Yaml) -> BTreeMap<String, String> {
    node.as_hash().expect("labels").iter().map(|(key, value)| (text_of(key), text_of(value))).collect()
}

fn selects(selector: &BTreeMap<String, String>, pod_labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(key, value)| pod_labels.get(key) == Some(value))
}

#[test]
fn every_deploy_file_parses_and_sets_only_variables_the_service_reads() {
    for file in ["compose.yaml", "compose-cluster.yaml"].into_iter().chain(KUBERNETES) {
        assert!(!yaml(file).is_empty(), "{file} holds a document");
    }
    for file in ["Dockerfile", "compose.yaml", "compose-cluster.yaml"].into_iter().chain(KUBERNETES) {
        for name in liangma_variables(&read(file)) {
            assert!(ENVIRONMENT.contains(&name.as_str()), "{file} sets {name}, which liangma does not read");
        }
    }
}

#[test]
fn the_kubernetes_manifests_agree_with_each_other_and_with_the_code() {
    use clap::Parser;
    let objects = kubernetes_objects();
    let get = |kind: &str, name: &str| {
        objects.get(&(kind.to_owned(), name.to_owned())).unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let deployment = get("Deployment", "liangma");
    let pod = &deployment["spec"]["template"];
    let pod_labels = labels(&pod["metadata"]["labels"]);
    assert!(selects(&labels(&deployment["spec"]["selector"]["matchLabels"]), &pod_labels));
    let service = get("Service", "liangma");
    assert!(selects(&labels(&service["spec"]["selector"]), &pod_labels), "the Service reaches the pods");
    let budget = get("PodDisruptionBudget", "liangma");
    assert!(selects(&labels(&budget["spec"]["selector"]["matchLabels"]), &pod_labels));
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap();
    assert!(replicas >= 2 && budget["spec"]["minAvailable"].as_i64().unwrap() < replicas, "drains can proceed");

    let container = &pod["spec"]["containers"][0];
    let ports: BTreeMap<String, i64> = container["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|port| (text_of(&port["name"]), port["containerPort"].as_i64().unwrap()))
        .collect();
    for port in service["spec"]["ports"].as_vec().unwrap() {
        assert!(ports.contains_key(&text_of(&port["targetPort"])), "Service targets a named container port");
    }
    let environment: BTreeMap<String, String> = container["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|variable| (text_of(&variable["name"]), text_of(&variable["value"])))
        .collect();
    for name in environment.keys() {
        assert!(ENVIRONMENT.contains(&name.as_str()), "the Deployment sets {name}, which liangma does not read");
    }

    // Volumes: what each mount path holds (a ConfigMap's or a Secret's keys, or scratch).
    let volumes: BTreeMap<String, &Yaml> =
        pod["spec"]["volumes"].as_vec().unwrap().iter().map(|volume| (text_of(&volume["name"]), volume)).collect();
    let keys_of =
        |object: &Yaml, field: &str| -> Vec<String> { object[field].as_hash().unwrap().keys().map(text_of).collect() };
    let mut files: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut config_file = None;
    for mount in container["volumeMounts"].as_vec().unwrap() {
        let path = PathBuf::from(text_of(&mount["mountPath"]));
        let volume = volumes[&text_of(&mount["name"])];
        if !volume["configMap"].is_badvalue() {
            let map = get("ConfigMap", &text_of(&volume["configMap"]["name"]));
            let key = text_of(&mount["subPath"]);
            assert!(keys_of(map, "data").contains(&key), "the ConfigMap holds {key}");
            config_file = Some((path, map["data"][key.as_str()].as_str().unwrap().to_owned()));
        } else if !volume["secret"].is_badvalue() {
            let secret = get("Secret", &text_of(&volume["secret"]["secretName"]));
            let mode = volume["secret"]["defaultMode"].as_i64().unwrap();
            assert_eq!(mode & 0o027, 0, "secret files must pass the service's own permission check");
            files.insert(path, keys_of(secret, "stringData"));
        } else {
            assert!(!volume["emptyDir"].is_badvalue());
            files.insert(path, Vec::new());
        }
    }
    let (config_path, config_text) = config_file.expect("the configuration is mounted");
    assert_eq!(environment["LIANGMA_CONFIG"], config_path.to_str().unwrap());

    // The configuration loads, and every file it names is in a mounted volume.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liangma.toml");
    std::fs::write(&path, &config_text).unwrap();
    let config = Config::load(Some(&path), |name| environment.get(name).cloned()).unwrap();
    assert!(config.directory_public_key().unwrap().is_some());
    let mounted = |file: &std::path::Path| {
        let folder = files.get(file.parent().unwrap()).unwrap_or_else(|| panic!("{} is not mounted", file.display()));
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(folder.is_empty() || folder.contains(&name), "{} is not in its Secret", file.display());
    };
    let tls = config.tls.as_ref().expect("[tls] off loopback");
    for file in [&tls.certificate, &tls.private_key, &tls.ca] {
        mounted(file);
    }
    for issuer in &config.issuers {
        mounted(&issuer.signing_key);
        mounted(&issuer.subject_secret);
    }
    assert!(files.get(&config.data_dir).is_some_and(Vec::is_empty), "data_dir is a writable scratch volume");
    assert_eq!(i64::from(config.listen.port()), ports["grpc"]);
    let metrics = config.metrics_listen.expect("metrics are scraped");
    assert_eq!(i64::from(metrics.port()), ports["metrics"]);
    let annotations = labels(&pod["metadata"]["annotations"]);
    assert_eq!(annotations["prometheus.io/port"], ports["metrics"].to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(config.store.redis_topology, liangma::config::RedisTopologyKind::Cluster);
    assert!(config.store.used_mark_replicas >= 1, "a failover must not lose a used mark");
    let grace = pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(grace > config.limits.shutdown_grace_secs as i64, "calls drain before SIGKILL");

    // The probes are `liangma client … health` calls the CLI accepts, with the node's own files.
    assert!(read("Dockerfile").contains("COPY --from=build /out/liangma /usr/local/bin/liangma"));
    for probe in ["readinessProbe", "livenessProbe"] {
        let command = strings(&container[probe]["exec"]["command"]);
        assert_eq!(command[0], "/usr/local/bin/liangma");
        liangma::cli::Cli::try_parse_from(&command).unwrap_or_else(|e| panic!("{probe}: {e}"));
        let option = |name: &str| command.iter().skip_while(|word| *word != name).nth(1).cloned().unwrap();
        assert_eq!(option("--server"), format!("https://127.0.0.1:{}", ports["grpc"]));
        assert_eq!(PathBuf::from(option("--ca")), tls.ca);
        assert_eq!(PathBuf::from(option("--cert")), tls.certificate);
        assert_eq!(PathBuf::from(option("--key")), tls.private_key);
        assert_eq!(command.contains(&"--alive".to_owned()), probe == "livenessProbe");
        if probe == "readinessProbe" {
            assert!(liangma::grpc::SERVICE_NAMES.contains(&option("--service").as_str()));
        }
    }
}

#[test]
fn the_cluster_compose_file_builds_a_cluster_the_replicas_use() {
    let compose = &yaml("compose-cluster.yaml")[0];
    let services = compose["services"].as_hash().unwrap();
    let service_names: Vec<String> = services.keys().map(text_of).collect();
    let redis_nodes: Vec<&String> =
        service_names.iter().filter(|name| name.starts_with("redis-") && *name != "redis-cluster-init").collect();
    assert_eq!(redis_nodes.len(), 6, "three masters, a replica each");
    let node_command = strings(&compose["x-redis-node"]["command"]);
    assert!(node_command.windows(2).any(|pair| pair == ["--cluster-enabled", "yes"]));
    let init = strings(&services[&Yaml::String("redis-cluster-init".into())]["command"]).join(" ");
    for node in &redis_nodes {
        assert!(init.contains(&format!("getent hosts {node} ")), "the cluster is created with {node}");
    }
    assert!(init.contains("--cluster-replicas 1"));

    let dockerfile = read("Dockerfile");
    let mut environment = dockerfile_environment(&dockerfile);
    for (key, value) in compose["x-liangma"]["environment"].as_hash().unwrap() {
        environment.insert(text_of(key), text_of(value));
    }
    let config = load_with(&environment);
    assert_eq!(config.store.backend, liangma::config::StoreBackend::Redis);
    assert_eq!(config.store.redis_topology, liangma::config::RedisTopologyKind::Cluster);
    for node in &config.store.redis_nodes {
        let host = node.trim_start_matches("redis://").split(':').next().unwrap();
        assert!(service_names.iter().any(|name| name == host), "{node} is a service of the file");
    }
    let replicas: Vec<&String> = service_names.iter().filter(|name| name.starts_with("liangma-")).collect();
    assert_eq!(replicas.len(), 2);
    for replica in replicas {
        let ports = strings(&services[&Yaml::String(replica.clone())]["ports"]);
        assert!(ports[0].ends_with(&format!(":{}", config.listen.port())), "{replica} publishes the gRPC port");
    }
}

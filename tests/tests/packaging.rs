//! Packaging: the container build (deploy/container/Dockerfile), the compose file
//! (deploy/compose.yaml) and the Kubernetes base (deploy/kubernetes/base), checked as files.
//!
//! What is checked: the base lists exactly its manifests and each validates against the Kubernetes
//! schema in strict mode (kubernetes-validate, offline, a fixed Kubernetes version), while a copy of
//! our StatefulSet with one wrong field does not; the server configuration the manifests and the
//! compose file give each node deserializes into the server's own `Config` (so every key exists and
//! every value has the right type) and passes its start-up checks; the media ports that
//! configuration opens are exactly the ones the containers, the media Services and the compose file
//! publish, with the right protocols, 1:1 and distinct per node; probes, non-root pods, the
//! PodDisruptionBudget, scrape annotations and Secret references are what they promise; the
//! Dockerfile's runtime stages run as a non-root uid and copy no model file.
//!
//! What is NOT checked here, because the test environment has no container engine, registry or
//! cluster: that the images build and start, that `docker compose up` brings the services up and
//! media flows through the published ports, that the base applies to a cluster (or that
//! `kustomize build` accepts it), that the LoadBalancer Services get their addresses. Those are
//! for a manual or CI run with those tools (deploy/README.md).
//!
//! Needs the test Python of tests/setup.sh (SAMTAL_PYTHON) with kubernetes-validate and PyYAML from
//! tests/peers/requirements.txt; no network.

use samtal_e2e::{python, repo_root};
use samtal_signaling::Config;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The Kubernetes version whose schemas the manifests are validated against: the oldest release
/// the base is meant for.
const KUBERNETES_VERSION: &str = "1.30.0";

/// The uid every image and pod runs as.
const SAMTAL_UID: u64 = 10001;

/// Prints, as JSON, the YAML documents of each file named (`yaml FILE...`: an object of file name
/// to list of documents) or the TOML document on stdin (`toml`).
const CONVERT: &str = r#"
import json, sys
if sys.argv[1] == "yaml":
    import yaml
    out = {}
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as f:
            out[path] = [d for d in yaml.safe_load_all(f) if d is not None]
else:
    import tomllib
    out = tomllib.loads(sys.stdin.read())
json.dump(out, sys.stdout)
"#;

fn deploy() -> PathBuf {
    repo_root().join("deploy")
}

fn base_dir() -> PathBuf {
    deploy().join("kubernetes/base")
}

fn run_python(args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(python());
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the test Python: {e}"));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())
            .expect("write to Python");
    }
    child.wait_with_output().expect("Python runs")
}

fn parse_json_output(what: &str, out: Output) -> Value {
    assert!(
        out.status.success(),
        "reading {what} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

/// The YAML documents of `path`.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let name = path.to_str().expect("UTF-8 path");
    let mut all = parse_json_output(name, run_python(&["-c", CONVERT, "yaml", name], None));
    match all[name].take() {
        Value::Array(docs) => docs,
        other => panic!("{name}: no documents: {other}"),
    }
}

fn yaml_doc(path: &Path) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{} holds one document", path.display());
    docs.remove(0)
}

fn toml_value(what: &str, text: &str) -> Value {
    parse_json_output(what, run_python(&["-c", CONVERT, "toml"], Some(text)))
}

// --- the Kubernetes base ------------------------------------------------------------------------

fn kustomization() -> Value {
    yaml_doc(&base_dir().join("kustomization.yaml"))
}

fn listed_resources() -> Vec<String> {
    kustomization()["resources"]
        .as_array()
        .expect("kustomization.yaml has resources")
        .iter()
        .map(|r| r.as_str().expect("a resource is a file name").to_owned())
        .collect()
}

/// Every resource of the base, with the file it is in.
fn manifests() -> Vec<(String, Value)> {
    listed_resources()
        .into_iter()
        .flat_map(|file| {
            yaml_docs(&base_dir().join(&file))
                .into_iter()
                .map(move |doc| (file.clone(), doc))
        })
        .collect()
}

fn find<'a>(manifests: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    manifests
        .iter()
        .map(|(_, doc)| doc)
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the base has no {kind} {name}"))
}

fn of_kind<'a>(manifests: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    manifests
        .iter()
        .map(|(_, doc)| doc)
        .filter(|doc| doc["kind"] == kind)
        .collect()
}

fn str_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .unwrap_or_else(|| panic!("{k}: not a string: {v}"))
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn array<'a>(value: &'a Value, what: &str) -> &'a Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what} is not a list: {value}"))
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    array(&workload["spec"]["template"]["spec"]["containers"], "containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Expands Kubernetes' `$(VAR)` references from the variables defined before.
fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("$({name})"), value);
    }
    out
}

/// The environment a container of one pod sees: its ConfigMaps (`envFrom`), then its `env` with
/// downward-API values for the pod `pod_name`/`pod_ip` and, for secret references, a stand-in
/// value naming the Secret's key (the Secret is not part of the base).
fn container_env(
    manifests: &[(String, Value)],
    container: &Value,
    pod_name: &str,
    pod_ip: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let name = source["configMapRef"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("envFrom other than a ConfigMap: {source}"));
        env.extend(str_map(&find(manifests, "ConfigMap", name)["data"]));
    }
    for var in array(&container["env"], "env") {
        let name = var["name"].as_str().expect("env name").to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            expand(value, &env)
        } else if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.name" => pod_name.to_owned(),
                "status.podIP" => pod_ip.to_owned(),
                other => panic!("{name}: unexpected fieldRef {other}"),
            }
        } else if var["valueFrom"]["secretKeyRef"].is_object() {
            let key = var["valueFrom"]["secretKeyRef"]["key"].as_str().expect("secret key");
            format!("value-of-secret-key-{key}-0123456789abcdef0123456789")
        } else {
            panic!("{name}: unexpected env source {var}")
        };
        env.insert(name, value);
    }
    env
}

/// Where a probe or annotation points: a port number, or the name of one of the container's ports.
fn resolve_port(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().unwrap_or_else(|| panic!("port {port}"));
    array(&container["ports"], "ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

// --- the server's configuration ----------------------------------------------------------------

/// A configuration value as `SAMTAL_*` variables carry it: JSON where it parses (numbers, lists),
/// else the string, as the server's environment provider reads them.
fn env_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// The server's configuration from a file (as JSON) overridden by `SAMTAL_*` variables, deserialized
/// with the server's own type, which refuses unknown keys and ill-typed values, and checked as at
/// start. `SAMTAL_LOG` and `SAMTAL_CONFIG` are not configuration keys.
fn server_config(file: Value, env: &BTreeMap<String, String>) -> Config {
    let mut merged = match file {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => panic!("a configuration file is a table: {other}"),
    };
    for (name, value) in env {
        let Some(key) = name.strip_prefix("SAMTAL_") else {
            continue;
        };
        if key == "LOG" || key == "CONFIG" {
            continue;
        }
        let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
        let (last, parents) = path.split_last().expect("a key");
        let mut table = &mut merged;
        for part in parents {
            table = table
                .entry(part.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap_or_else(|| panic!("{name}: {part} is not a table"));
        }
        table.insert(last.clone(), env_value(value));
    }
    let merged = Value::Object(merged);
    let config: Config = serde_json::from_value(merged.clone())
        .unwrap_or_else(|e| panic!("the server would refuse this configuration: {e}\n{merged:#}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("the server would refuse to start: {e}\n{merged:#}"));
    config
}

/// The media ports a node listens on: (port, "UDP"/"TCP") for each media loop.
fn media_ports(config: &Config) -> BTreeSet<(u64, String)> {
    assert!(
        config.media.loops > 0,
        "media.loops must be set: with 0 (one loop per core) the ports to open depend on the machine"
    );
    assert!(
        config.media.udp_port > 0 && config.media.tcp_port > 0,
        "fixed media ports are needed to publish them"
    );
    assert!(config.media.ice_tcp, "ICE-TCP is on in the packaged configuration");
    (0..config.media.loops as u64)
        .flat_map(|i| {
            [
                (u64::from(config.media.udp_port) + i, "UDP".to_owned()),
                (u64::from(config.media.tcp_port) + i, "TCP".to_owned()),
            ]
        })
        .collect()
}

/// The configuration of StatefulSet pod `samtal-<ordinal>`, and its server container.
fn k8s_node_config(manifests: &[(String, Value)], ordinal: u64) -> Config {
    let sts = find(manifests, "StatefulSet", "samtal");
    let server = container(sts, "samtal");
    let pod_name = format!("samtal-{ordinal}");
    let pod_ip = format!("10.244.{ordinal}.7");
    let env = container_env(manifests, server, &pod_name, &pod_ip);
    let args: Vec<String> = array(&server["args"], "args")
        .iter()
        .map(|a| expand(a.as_str().expect("string args"), &env))
        .collect();
    assert_eq!(
        args.last().map(String::as_str),
        Some("serve"),
        "the node runs `samtal serve`: {args:?}"
    );
    // `--config FILE`: FILE must be a key of a ConfigMap mounted at its directory.
    let file = match args.iter().position(|a| a == "--config") {
        Some(i) => {
            let path = Path::new(&args[i + 1]);
            let dir = path.parent().expect("a directory").to_str().expect("UTF-8");
            let key = path.file_name().expect("a file").to_str().expect("UTF-8");
            let mount = array(&server["volumeMounts"], "volumeMounts")
                .iter()
                .find(|m| m["mountPath"] == dir)
                .unwrap_or_else(|| panic!("nothing is mounted at {dir}"));
            let volume = array(&sts["spec"]["template"]["spec"]["volumes"], "volumes")
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap_or_else(|| panic!("no volume {}", mount["name"]));
            let map = volume["configMap"]["name"].as_str().expect("a ConfigMap volume");
            let text = find(manifests, "ConfigMap", map)["data"][key]
                .as_str()
                .unwrap_or_else(|| panic!("ConfigMap {map} has no {key}: node {pod_name} would not start"))
                .to_owned();
            toml_value(&format!("{map}/{key}"), &text)
        }
        None => Value::Null,
    };
    let config = server_config(file, &env);
    assert_eq!(
        config.media.ips,
        vec![pod_ip.parse::<std::net::IpAddr>().unwrap()],
        "{pod_name} binds its media to its pod address"
    );
    config
}

fn replicas(manifests: &[(String, Value)]) -> u64 {
    find(manifests, "StatefulSet", "samtal")["spec"]["replicas"]
        .as_u64()
        .expect("replicas is a number")
}

#[test]
fn the_kustomization_lists_exactly_the_manifests_of_the_base() {
    let listed = listed_resources();
    assert!(!listed.is_empty(), "kustomization.yaml lists no resources");
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "a resource is listed twice: {listed:?}");
    for file in &listed {
        assert!(base_dir().join(file).is_file(), "listed resource {file} does not exist");
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(base_dir())
        .expect("the base exists")
        .map(|e| e.expect("readable").file_name().to_string_lossy().into_owned())
        .filter(|name| (name.ends_with(".yaml") || name.ends_with(".yml")) && name != "kustomization.yaml")
        .collect();
    let listed: BTreeSet<String> = listed.into_iter().collect();
    assert_eq!(
        on_disk, listed,
        "manifest files and kustomization.yaml's resources differ"
    );
    // A base leaves the namespace to the overlay.
    for (file, doc) in manifests() {
        assert!(
            doc["metadata"]["namespace"].is_null(),
            "{file}: a namespace in the base"
        );
        assert!(doc["metadata"]["name"].is_string(), "{file}: a resource without a name");
    }
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schema_and_a_broken_one_does_not() {
    let files: Vec<PathBuf> = listed_resources().iter().map(|f| base_dir().join(f)).collect();
    let documents = manifests().len();
    let validate = |paths: &[PathBuf]| {
        let mut args = vec![
            "-m".to_owned(),
            "kubernetes_validate".to_owned(),
            "-k".to_owned(),
            KUBERNETES_VERSION.to_owned(),
            "--strict".to_owned(),
        ];
        args.extend(paths.iter().map(|p| p.to_str().expect("UTF-8").to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_python(&args, None);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text)
    };

    let (status, text) = validate(&files);
    assert!(
        status.success(),
        "kubernetes-validate rejected the base ({status}):\n{text}"
    );
    // An unknown kind or API version passes with only a warning: every resource must really have
    // been checked against a schema.
    assert_eq!(
        text.matches("passed for resource").count(),
        documents,
        "not every resource was validated against a schema:\n{text}"
    );
    assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");

    // The validator really validates: our own StatefulSet with one wrong value or one misspelt
    // field, and a media Service with a port that is no number, are refused.
    let manifests = manifests();
    let sts = find(&manifests, "StatefulSet", "samtal");
    let mut wrong_type = sts.clone();
    wrong_type["spec"]["replicas"] = json!("two");
    let mut unknown_field = sts.clone();
    unknown_field["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = json!({});
    let mut wrong_port = find(&manifests, "Service", "samtal-0-media").clone();
    wrong_port["spec"]["ports"][0]["port"] = json!("ten thousand");
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, doc, complaint) in [
        ("wrong-type.yaml", wrong_type, "'two' is not of type"),
        ("unknown-field.yaml", unknown_field, "'livenessProbes' was unexpected"),
        ("wrong-port.yaml", wrong_port, "'ten thousand' is not of type"),
    ] {
        // JSON is YAML.
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let (status, text) = validate(&[path]);
        assert!(!status.success(), "{name} was accepted:\n{text}");
        assert!(
            text.contains("did not validate") && text.contains(complaint),
            "{name}:\n{text}"
        );
    }
}

#[test]
fn each_server_node_has_its_configuration_and_its_own_media_service() {
    let manifests = manifests();
    let sts = find(&manifests, "StatefulSet", "samtal");
    let server = container(sts, "samtal");
    let pod_labels = str_map(&sts["spec"]["template"]["metadata"]["labels"]);
    let replicas = replicas(&manifests);
    assert!(replicas >= 2, "two server nodes or more");

    let container_ports: BTreeSet<(u64, String)> = array(&server["ports"], "ports")
        .iter()
        .map(|p| {
            (
                p["containerPort"].as_u64().expect("containerPort"),
                p["protocol"].as_str().unwrap_or("TCP").to_owned(),
            )
        })
        .collect();
    let mut public = BTreeSet::new();
    let mut http_port = None;
    for ordinal in 0..replicas {
        let config = k8s_node_config(&manifests, ordinal);
        http_port = Some(u64::from(config.listen.port()));
        let http = (u64::from(config.listen.port()), "TCP".to_owned());
        let media = media_ports(&config);
        let mut expected = media.clone();
        expected.insert(http.clone());
        assert_eq!(
            container_ports, expected,
            "samtal-{ordinal}: the container ports are not the HTTP port and the media ports it listens on"
        );
        assert!(
            !config.media.public_ips.is_empty(),
            "samtal-{ordinal}: no public media address"
        );
        for ip in &config.media.public_ips {
            assert!(
                public.insert(*ip),
                "samtal-{ordinal}: public address {ip} is another node's too"
            );
        }
        assert!(
            config
                .database_url
                .as_deref()
                .is_some_and(|u| u.starts_with("value-of-secret-key-")),
            "samtal-{ordinal}: the transcript store must be the shared database of the Secret, not each node's SQLite"
        );

        // Its media Service: exactly the media ports, each with its protocol, untranslated, selecting
        // this pod only.
        let service = find(&manifests, "Service", &format!("samtal-{ordinal}-media"));
        assert_eq!(service["spec"]["type"], "LoadBalancer", "samtal-{ordinal}-media");
        let selector = str_map(&service["spec"]["selector"]);
        assert_eq!(
            selector.get("statefulset.kubernetes.io/pod-name").map(String::as_str),
            Some(format!("samtal-{ordinal}").as_str()),
            "samtal-{ordinal}-media must select its node's pod"
        );
        for (k, v) in &selector {
            if k != "statefulset.kubernetes.io/pod-name" {
                assert_eq!(
                    pod_labels.get(k),
                    Some(v),
                    "samtal-{ordinal}-media selects {k}={v}, not a server label"
                );
            }
        }
        let mut service_ports = BTreeSet::new();
        for p in array(&service["spec"]["ports"], "ports") {
            let port = p["port"].as_u64().expect("port");
            assert_eq!(
                resolve_port(server, &p["targetPort"]),
                port,
                "samtal-{ordinal}-media: port {port} is translated; the node announces the port it listens on"
            );
            service_ports.insert((port, p["protocol"].as_str().unwrap_or("TCP").to_owned()));
        }
        assert_eq!(service_ports, media, "samtal-{ordinal}-media: ports and protocols");
    }
    let media_services = of_kind(&manifests, "Service")
        .into_iter()
        .filter(|s| s["metadata"]["name"].as_str().is_some_and(|n| n.ends_with("-media")))
        .count() as u64;
    assert_eq!(media_services, replicas, "one media Service per node");

    // The headless Service the StatefulSet names, and the HTTP Service, on the HTTP port.
    let headless = find(
        &manifests,
        "Service",
        sts["spec"]["serviceName"].as_str().expect("serviceName"),
    );
    assert_eq!(headless["spec"]["clusterIP"], "None");
    for service in [headless, find(&manifests, "Service", "samtal-http")] {
        let selector = str_map(&service["spec"]["selector"]);
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "{service}");
        let ports = array(&service["spec"]["ports"], "ports");
        assert!(
            ports
                .iter()
                .any(|p| Some(resolve_port(server, &p["targetPort"])) == http_port
                    && p["protocol"].as_str().unwrap_or("TCP") == "TCP"),
            "{}: no HTTP port",
            service["metadata"]["name"]
        );
    }
}

/// Pod and container security settings: non-root with a fixed uid, no privilege escalation.
fn assert_unprivileged(workload: &Value) {
    let name = &workload["metadata"]["name"];
    let pod = &workload["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}: runAsNonRoot");
    assert_eq!(
        pod["securityContext"]["runAsUser"], SAMTAL_UID,
        "{name}: the images' uid"
    );
    assert_ne!(pod["securityContext"]["runAsGroup"], 0, "{name}: runAsGroup");
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "{name}: no API token needed"
    );
    for c in array(&pod["containers"], "containers") {
        let security = &c["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}/{}", c["name"]);
        assert_ne!(security["runAsUser"], 0, "{name}/{}: runs as root", c["name"]);
        assert_ne!(security["privileged"], true, "{name}/{}", c["name"]);
        assert!(
            array(&security["capabilities"]["drop"], "drop").contains(&json!("ALL")),
            "{name}/{}: capabilities not dropped",
            c["name"]
        );
    }
}

/// The Prometheus scrape annotations of a workload's pods name `port` and /metrics.
fn assert_scraped(workload: &Value, port: u64) {
    let name = &workload["metadata"]["name"];
    let annotations = str_map(&workload["spec"]["template"]["metadata"]["annotations"]);
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("true"),
        "{name}"
    );
    assert_eq!(annotations.get("prometheus.io/port"), Some(&port.to_string()), "{name}");
    assert_eq!(
        annotations.get("prometheus.io/path").map(String::as_str),
        Some("/metrics"),
        "{name}"
    );
}

#[test]
fn pods_run_unprivileged_with_probes_on_health_and_readiness_and_scrape_annotations() {
    let manifests = manifests();
    let sts = find(&manifests, "StatefulSet", "samtal");
    let server = container(sts, "samtal");
    let config = k8s_node_config(&manifests, 0);
    let http = u64::from(config.listen.port());
    assert_unprivileged(sts);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &server[probe]["httpGet"];
        assert_eq!(get["path"], path, "server {probe}");
        assert_eq!(
            resolve_port(server, &get["port"]),
            http,
            "server {probe} is not on the HTTP port"
        );
        assert!(
            get["scheme"].is_null() || get["scheme"] == "HTTP",
            "server {probe}: plain HTTP"
        );
    }
    assert_scraped(sts, http);

    let transcriber = find(&manifests, "Deployment", "samtal-transcriber");
    let worker = container(transcriber, "transcriber");
    assert_unprivileged(transcriber);
    let env = container_env(&manifests, worker, "samtal-transcriber-0", "10.244.9.9");
    let metrics: std::net::SocketAddr = env["SAMTAL_TRANSCRIBER_METRICS"]
        .parse()
        .expect("SAMTAL_TRANSCRIBER_METRICS is an address");
    let metrics = u64::from(metrics.port());
    assert!(
        array(&worker["ports"], "ports")
            .iter()
            .any(|p| p["containerPort"] == metrics),
        "the transcriber's metrics port is not a container port"
    );
    assert_eq!(
        resolve_port(worker, &worker["livenessProbe"]["httpGet"]["port"]),
        metrics
    );
    assert_scraped(transcriber, metrics);
    // The model files come from a volume, read-only.
    for key in ["SAMTAL_TRANSCRIBER_MODEL", "SAMTAL_TRANSCRIBER_VAD_MODEL"] {
        let path = &env[key];
        let mount = array(&worker["volumeMounts"], "volumeMounts")
            .iter()
            .find(|m| {
                m["mountPath"]
                    .as_str()
                    .is_some_and(|dir| path.starts_with(&format!("{dir}/")))
            })
            .unwrap_or_else(|| panic!("{key}={path} is on no mounted volume"));
        assert_eq!(mount["readOnly"], true, "{key}: the models are mounted read-only");
    }
    // It registers with a node by its stable name, on the node's HTTP port.
    let server_url = &env["SAMTAL_TRANSCRIBER_SERVER"];
    let host = server_url
        .strip_prefix("ws://")
        .and_then(|rest| rest.strip_suffix("/ws"))
        .unwrap_or_else(|| panic!("SAMTAL_TRANSCRIBER_SERVER={server_url}"));
    let (host, port) = host.rsplit_once(':').expect("host:port");
    assert_eq!(port.parse::<u64>().ok(), Some(http), "{server_url}");
    let service = sts["spec"]["serviceName"].as_str().unwrap();
    let pods: Vec<String> = (0..replicas(&manifests))
        .map(|i| format!("samtal-{i}.{service}"))
        .collect();
    assert!(
        pods.iter().any(|p| p == host),
        "{server_url} names none of the nodes {pods:?}"
    );
    // Its --bind-ip is the pod's own address.
    let args: Vec<String> = array(&worker["args"], "args")
        .iter()
        .map(|a| expand(a.as_str().unwrap(), &env))
        .collect();
    let bind = args.iter().position(|a| a == "--bind-ip").map(|i| args[i + 1].as_str());
    assert_eq!(
        bind,
        Some("10.244.9.9"),
        "the transcriber binds its media to its pod address: {args:?}"
    );
}

#[test]
fn the_disruption_budget_covers_the_server_pods_only() {
    let manifests = manifests();
    let budgets = of_kind(&manifests, "PodDisruptionBudget");
    assert_eq!(budgets.len(), 1, "one PodDisruptionBudget");
    let pdb = budgets[0];
    let selector = str_map(&pdb["spec"]["selector"]["matchLabels"]);
    assert!(!selector.is_empty(), "the budget selects by labels");
    let selects = |workload: &Value| {
        let labels = str_map(&workload["spec"]["template"]["metadata"]["labels"]);
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(
        selects(find(&manifests, "StatefulSet", "samtal")),
        "the budget misses the server pods"
    );
    assert!(
        !selects(find(&manifests, "Deployment", "samtal-transcriber")),
        "the budget also selects the transcriber"
    );
    let replicas = replicas(&manifests);
    match (
        pdb["spec"]["minAvailable"].as_u64(),
        pdb["spec"]["maxUnavailable"].as_u64(),
    ) {
        (Some(min), None) => assert!(
            min >= 1 && min < replicas,
            "minAvailable {min} of {replicas}: none or all"
        ),
        (None, Some(max)) => assert!(max >= 1 && max < replicas, "maxUnavailable {max} of {replicas}"),
        other => panic!("the budget needs minAvailable or maxUnavailable as a number: {other:?}"),
    }
}

#[test]
fn secrets_are_referenced_and_never_part_of_the_base() {
    let manifests = manifests();
    assert!(of_kind(&manifests, "Secret").is_empty(), "the base defines a Secret");
    // No secret-looking value in plain text, in a ConfigMap or an env value.
    let secret_like = |name: &str| {
        let upper = name.to_ascii_uppercase();
        ["SECRET", "TOKEN", "PASSWORD", "WORKER_KEY", "DATABASE_URL"]
            .iter()
            .any(|w| upper.contains(w))
    };
    for map in of_kind(&manifests, "ConfigMap") {
        for key in str_map(&map["data"]).keys() {
            assert!(!secret_like(key), "ConfigMap {} holds {key}", map["metadata"]["name"]);
        }
    }
    let mut references = BTreeMap::new();
    for workload in of_kind(&manifests, "StatefulSet")
        .into_iter()
        .chain(of_kind(&manifests, "Deployment"))
    {
        for c in array(&workload["spec"]["template"]["spec"]["containers"], "containers") {
            for var in c["env"].as_array().into_iter().flatten() {
                let name = var["name"].as_str().unwrap().to_owned();
                if secret_like(&name) {
                    let reference = &var["valueFrom"]["secretKeyRef"];
                    assert!(reference.is_object(), "{name} is not taken from a Secret: {var}");
                    assert_eq!(reference["name"], "samtal-secrets", "{name}");
                    references.insert(name, reference["key"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    for name in [
        "SAMTAL_AUTH__SECRET",
        "SAMTAL_TRANSCRIPTION__WORKER_KEY",
        "SAMTAL_DATABASE_URL",
        "SAMTAL_TRANSCRIBER_TOKEN",
    ] {
        assert!(
            references.contains_key(name),
            "{name} is not set from the Secret: {references:?}"
        );
    }
    assert_eq!(
        references["SAMTAL_TRANSCRIBER_TOKEN"], references["SAMTAL_TRANSCRIPTION__WORKER_KEY"],
        "the transcriber's token must be the server's worker key"
    );
}

// --- compose -------------------------------------------------------------------------------------

/// Compose's variable interpolation with stand-ins: `${VAR:-default}` is the default, `${VAR}` and
/// `${VAR:?message}` a value naming the variable, long enough for a secret. Also returns the
/// variables used.
fn interpolate(text: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut vars = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|e| start + e).expect("closed ${");
        let inner = &rest[start + 2..end];
        let (name, value) = match inner.split_once(":-") {
            Some((name, default)) => (name, default.to_owned()),
            None => {
                let name = inner.split_once(":?").map_or(inner, |(n, _)| n);
                (
                    name,
                    format!("compose-{}-0123456789abcdef0123456789", name.to_ascii_lowercase()),
                )
            }
        };
        vars.push(name.to_owned());
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    (out, vars)
}

fn compose() -> Value {
    yaml_doc(&deploy().join("compose.yaml"))
}

/// A service's environment, raw (as written) and interpolated.
fn compose_env(service: &Value) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let raw: BTreeMap<String, String> = match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .map(|e| {
                let (k, v) = e.as_str().expect("KEY=VALUE").split_once('=').expect("KEY=VALUE");
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let interpolated = raw.iter().map(|(k, v)| (k.clone(), interpolate(v).0)).collect();
    (raw, interpolated)
}

/// Published ports as (host port, container port, protocol), ranges expanded.
fn published(service: &Value) -> Vec<(u64, u64, String)> {
    let range = |text: &str| -> Vec<u64> {
        match text.split_once('-') {
            Some((a, b)) => (a.parse().expect("port")..=b.parse().expect("port")).collect(),
            None => vec![text.parse().unwrap_or_else(|_| panic!("port {text}"))],
        }
    };
    let mut out = Vec::new();
    for entry in service["ports"].as_array().into_iter().flatten() {
        if let Some(text) = entry.as_str() {
            let (ports, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
            let parts: Vec<&str> = ports.split(':').collect();
            assert!(parts.len() >= 2, "{text}: publish with an explicit host port");
            let host = range(parts[parts.len() - 2]);
            let container = range(parts[parts.len() - 1]);
            assert_eq!(host.len(), container.len(), "{text}");
            out.extend(
                host.into_iter()
                    .zip(container)
                    .map(|(h, c)| (h, c, protocol.to_ascii_uppercase())),
            );
        } else {
            let target = entry["target"].as_u64().expect("target");
            let host = entry["published"]
                .as_u64()
                .or_else(|| entry["published"].as_str().and_then(|p| p.parse().ok()))
                .expect("published");
            let protocol = entry["protocol"].as_str().unwrap_or("tcp").to_ascii_uppercase();
            out.push((host, target, protocol));
        }
    }
    out
}

fn command_args(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(list) => list.iter().map(|a| a.as_str().expect("string").to_owned()).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn compose_runs_two_nodes_on_shared_postgres_with_their_own_media_ports() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    for name in ["nats", "postgres", "coturn", "transcriber"] {
        assert!(services.contains_key(name), "compose has no service {name}");
    }
    let image = |name: &str| services[name]["image"].as_str().unwrap_or_default().to_owned();
    assert!(image("nats").ends_with("nats:2.9"), "NATS 2.9: {}", image("nats"));
    assert!(
        command_args(&services["nats"]).contains(&"-js".to_owned()),
        "NATS without JetStream"
    );
    assert!(image("postgres").contains("postgres:"), "{}", image("postgres"));
    assert!(image("coturn").contains("coturn"), "{}", image("coturn"));
    assert_eq!(services["transcriber"]["build"]["target"], "transcriber");

    // The Samtal nodes: services running the server image's `samtal serve` (not a one-off profile).
    let nodes: Vec<&String> = services
        .iter()
        .filter(|(_, s)| s["build"]["target"] == "server" && s["profiles"].is_null())
        .map(|(name, _)| name)
        .collect();
    assert_eq!(nodes.len(), 2, "two Samtal nodes: {nodes:?}");

    // Every published host port, of every service, is published once.
    let mut taken = BTreeSet::new();
    for (name, service) in services {
        for (host, _, protocol) in published(service) {
            assert!(
                taken.insert((host, protocol.clone())),
                "{name}: host port {host}/{protocol} is published twice"
            );
        }
    }

    let mut database_urls = BTreeSet::new();
    let mut node_configs = BTreeMap::new();
    for name in &nodes {
        let service = &services[name.as_str()];
        let (raw, env) = compose_env(service);
        let config = server_config(Value::Null, &env);
        let ports = published(service);
        let listen = u64::from(config.listen.port());
        assert!(
            ports.iter().any(|(_, c, p)| *c == listen && p == "TCP"),
            "{name}: its HTTP port {listen} is not published"
        );
        for (port, protocol) in media_ports(&config) {
            assert!(
                ports.contains(&(port, port, protocol.clone())),
                "{name}: media port {port}/{protocol} is not published 1:1 ({ports:?})"
            );
        }
        let address = service["networks"]
            .as_object()
            .and_then(|n| n.values().find_map(|v| v["ipv4_address"].as_str()))
            .unwrap_or_else(|| panic!("{name}: no fixed address"));
        assert_eq!(
            config.media.ips,
            vec![address.parse::<std::net::IpAddr>().unwrap()],
            "{name}: media.ips is its container address"
        );
        assert!(!config.media.public_ips.is_empty(), "{name}: no public media address");
        let url = config.database_url.clone().unwrap_or_default();
        assert!(
            url.starts_with("postgres://") && url.contains("@postgres:"),
            "{name}: not on the compose PostgreSQL: {url}"
        );
        database_urls.insert(url);
        // Its TURN secret is coturn's.
        let turn_var = interpolate(&raw["SAMTAL_TURN__SECRET"]).1;
        let coturn_secret = command_args(&services["coturn"])
            .into_iter()
            .find_map(|a| a.strip_prefix("--static-auth-secret=").map(|s| interpolate(s).1))
            .expect("coturn --static-auth-secret");
        assert_eq!(
            turn_var, coturn_secret,
            "{name}: turn.secret and coturn's secret differ"
        );
        assert!(!config.turn.urls.is_empty(), "{name}: no TURN URLs");
        // One cluster on the compose NATS; each node advertises its own address.
        assert_eq!(config.cluster.nats_url.as_deref(), Some("nats://nats:4222"), "{name}");
        assert_eq!(
            config.cluster.advertise_url,
            Some(format!("http://{address}:{listen}")),
            "{name}: the other node reaches it at its own address"
        );
        node_configs.insert((*name).clone(), (raw, config));
    }
    assert_eq!(
        database_urls.len(),
        1,
        "the nodes must share one database: {database_urls:?}"
    );
    let node_ids: BTreeSet<_> = node_configs.values().map(|(_, c)| c.cluster.node_id.clone()).collect();
    assert_eq!(node_ids.len(), nodes.len(), "node ids must differ: {node_ids:?}");
    let coturn_ports = published(&services["coturn"]);
    for protocol in ["UDP", "TCP"] {
        assert!(
            coturn_ports.contains(&(3478, 3478, protocol.into())),
            "coturn 3478/{protocol}"
        );
    }

    // The transcriber registers with a node, with that node's worker key, binding to its own address.
    let transcriber = &services["transcriber"];
    let (raw, env) = compose_env(transcriber);
    let url = &env["SAMTAL_TRANSCRIBER_SERVER"];
    let (host, port) = url
        .strip_prefix("ws://")
        .and_then(|r| r.strip_suffix("/ws"))
        .and_then(|r| r.rsplit_once(':'))
        .unwrap_or_else(|| panic!("SAMTAL_TRANSCRIBER_SERVER={url}"));
    let (node_raw, node) = node_configs
        .get(host)
        .unwrap_or_else(|| panic!("{url} names no Samtal node"));
    assert_eq!(port.parse::<u16>().ok(), Some(node.listen.port()), "{url}");
    assert_eq!(
        interpolate(&raw["SAMTAL_TRANSCRIBER_TOKEN"]).1,
        interpolate(&node_raw["SAMTAL_TRANSCRIPTION__WORKER_KEY"]).1,
        "the transcriber's token is not its node's worker key"
    );
    let args = command_args(transcriber);
    let bind = args.iter().position(|a| a == "--bind-ip").map(|i| args[i + 1].as_str());
    let own = transcriber["networks"]
        .as_object()
        .and_then(|n| n.values().find_map(|v| v["ipv4_address"].as_str()));
    assert!(
        bind.is_some() && bind == own,
        "--bind-ip {bind:?} is not the transcriber's address {own:?}"
    );
    for key in ["SAMTAL_TRANSCRIBER_MODEL", "SAMTAL_TRANSCRIBER_VAD_MODEL"] {
        let path = &env[key];
        assert!(
            transcriber["volumes"].as_array().into_iter().flatten().any(|v| {
                v.as_str()
                    .and_then(|v| v.split(':').nth(1))
                    .is_some_and(|target| path.starts_with(&format!("{target}/")))
            }),
            "{key}={path} is on no volume"
        );
    }
}

// --- the Dockerfile --------------------------------------------------------------------------------

struct Stage {
    name: String,
    from: String,
    /// (instruction in upper case, its arguments), continuation lines joined.
    instructions: Vec<(String, String)>,
}

fn dockerfile() -> Vec<Stage> {
    let text = std::fs::read_to_string(deploy().join("container/Dockerfile")).expect("the Dockerfile");
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    let mut args = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in lines {
        let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = instruction.to_ascii_uppercase();
        let rest = rest.trim().to_owned();
        if instruction == "ARG" && stages.is_empty() {
            if let Some((name, value)) = rest.split_once('=') {
                args.insert(name.to_owned(), value.to_owned());
            }
        } else if instruction == "FROM" {
            let mut from = rest.clone();
            for (name, value) in &args {
                from = from.replace(&format!("${{{name}}}"), value);
            }
            let words: Vec<&str> = from.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => panic!("every stage is named: FROM {rest}"),
            };
            stages.push(Stage {
                name,
                from: words[0].to_owned(),
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before the first FROM")
                .instructions
                .push((instruction, rest));
        }
    }
    stages
}

impl Stage {
    fn all(&self, instruction: &str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |(i, _)| i == instruction)
            .map(|(_, rest)| rest.as_str())
    }
}

/// The external image a stage is built on, following stages built on stages.
fn root_image<'a>(stages: &'a [Stage], stage: &'a Stage) -> &'a str {
    match stages.iter().find(|s| s.name == stage.from) {
        Some(parent) => root_image(stages, parent),
        None => &stage.from,
    }
}

/// The value of `ENV KEY=VALUE` in a stage (several per instruction allowed).
fn stage_env(stage: &Stage) -> BTreeMap<String, String> {
    stage
        .all("ENV")
        .flat_map(|rest| rest.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn the_runtime_images_run_unprivileged_and_carry_no_model() {
    let stages = dockerfile();
    let stage = |name: &str| {
        stages
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("the Dockerfile has no stage {name}"))
    };
    let build = stage("build");
    let (server, transcriber) = (stage("server"), stage("transcriber"));

    // Build stage: a Debian-based Rust image with what tests/setup.sh installs for the build.
    let build_image = root_image(&stages, build);
    let (_, tag) = build_image.rsplit_once(':').expect("a tagged Rust image");
    assert!(build_image.contains("rust:"), "{build_image}");
    let release = tag.rsplit('-').next().expect("a Debian release in the tag");
    let run: String = build.all("RUN").collect::<Vec<_>>().join("\n");
    for package in ["cmake", "libclang-dev", "pkg-config"] {
        assert!(run.contains(package), "the build stage does not install {package}");
    }
    assert!(run.contains("cargo build --release --locked"), "{run}");
    let words: Vec<&str> = run.split_whitespace().collect();
    for bin in ["samtal", "samtal-transcriber"] {
        assert!(
            words.windows(2).any(|w| w == ["--bin", bin]),
            "the build stage does not build {bin}: {run}"
        );
    }

    for runtime in [server, transcriber] {
        let name = &runtime.name;
        // The glibc the binaries were linked against: the same Debian release, slim.
        assert_eq!(
            root_image(&stages, runtime).rsplit('/').next(),
            Some(format!("debian:{release}-slim").as_str()),
            "{name}: not on the build image's Debian release"
        );
        let user = runtime
            .all("USER")
            .last()
            .unwrap_or_else(|| panic!("{name}: no USER: it would run as root"));
        let uid: u64 = user
            .split(':')
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or_else(|| panic!("{name}: USER {user} is not a numeric uid (runAsNonRoot needs one)"));
        assert_eq!(uid, SAMTAL_UID, "{name}: USER {user}");
        // No model file comes into a runtime image, from the context or another stage.
        let chain: Vec<&Stage> =
            std::iter::successors(Some(runtime), |s| stages.iter().find(|p| p.name == s.from)).collect();
        for s in chain {
            for (instruction, rest) in &s.instructions {
                if instruction == "COPY" || instruction == "ADD" {
                    let lower = rest.to_ascii_lowercase();
                    for bad in [".bin", ".gguf", ".onnx", "models"] {
                        assert!(!lower.contains(bad), "{}: {instruction} {rest} copies a model", s.name);
                    }
                }
            }
        }
        assert!(runtime.all("ENTRYPOINT").next().is_some(), "{name}: no ENTRYPOINT");
    }

    // The server finds its web client and listens where the image says.
    let env = stage_env(server);
    let web_dir = env.get("SAMTAL_WEB_DIR").expect("the server image sets SAMTAL_WEB_DIR");
    assert!(
        server
            .all("COPY")
            .any(|c| c.split_whitespace().collect::<Vec<_>>() == ["web", web_dir]),
        "the web client is not copied to {web_dir}"
    );
    let config = server_config(Value::Null, &env);
    let exposed: BTreeSet<String> = server
        .all("EXPOSE")
        .flat_map(|e| e.split_whitespace())
        .map(str::to_ascii_lowercase)
        .collect();
    let mut needed = vec![format!("{}/tcp", config.listen.port())];
    needed.push(format!("{}/udp", config.media.udp_port));
    needed.push(format!("{}/tcp", config.media.tcp_port));
    for port in needed {
        assert!(
            exposed.contains(&port),
            "the server image does not expose {port}: {exposed:?}"
        );
    }
    let env = stage_env(transcriber);
    for key in ["SAMTAL_TRANSCRIBER_MODEL", "SAMTAL_TRANSCRIBER_VAD_MODEL"] {
        assert!(
            env.get(key).is_some_and(|p| p.starts_with("/models/")),
            "{key}: the transcriber reads its models from the /models volume"
        );
    }

    // Model files in a checkout never reach the build context either.
    let ignore = std::fs::read_to_string(deploy().join("container/Dockerfile.dockerignore"))
        .expect("deploy/container/Dockerfile.dockerignore");
    let patterns: BTreeSet<&str> = ignore.lines().map(str::trim).collect();
    for pattern in ["**/*.bin", "**/*.gguf", "target", ".git"] {
        assert!(
            patterns.contains(pattern),
            "the build context does not exclude {pattern}"
        );
    }
}

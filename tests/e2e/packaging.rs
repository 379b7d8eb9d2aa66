//! The files the README points users at, checked: the OCI image `make oci`
//! writes (tools/oci.py), the Istio `WasmPlugin` (envoy/istio/wasmplugin.yaml),
//! the drop-in filter snippet (envoy/edge-auth-filter.yaml) loaded by a real
//! Envoy, the Grafana dashboard (dashboards/edge-auth.json), every metric
//! of which must be in that Envoy's `/stats/prometheus`, and the README
//! walkthrough's machine-client steps, run as written against the demo
//! stack's filter configuration (envoy/envoy.yaml).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use edge_auth_e2e::service::{free_port, AuthService, KEY_TAG_SECRET, SERVICE_TOKEN};
use edge_auth_e2e::{tokens, workspace_root, Alg, EchoServer, Envoy, EnvoyOptions, TestKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn built_wasm() -> PathBuf {
    std::env::var_os("EDGE_AUTH_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| edge_auth_e2e::envoy::default_wasm().unwrap_or_else(|e| panic!("{e}")))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-auth-packaging-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs tools/oci.py (what `make oci` runs); returns (success, stdout + stderr).
fn oci_tool(wasm: &Path, out: &Path, tag: &str) -> (bool, String) {
    let o = Command::new("python3")
        .arg(workspace_root().join("tools/oci.py"))
        .args([wasm.as_os_str(), out.as_os_str()])
        .arg(tag)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the blob a descriptor names and checks its digest and size against
/// the descriptor, and that no other algorithm than sha256 is used.
fn blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().expect("a digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{digest}"
    );
    let bytes = fs::read(layout.join("blobs/sha256").join(hex)).expect("the blob exists");
    assert_eq!(sha256_hex(&bytes), hex, "the blob's content matches its digest");
    assert_eq!(desc["size"].as_u64(), Some(bytes.len() as u64), "size of {digest}");
    bytes
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

#[test]
fn oci_layout_is_istios_wasm_image_with_the_module_byte_for_byte_and_reproducible() {
    let wasm_path = built_wasm();
    let wasm = fs::read(&wasm_path).expect("the built filter (make build)");
    let dir = scratch("oci");
    let (a, b) = (dir.join("a"), dir.join("b"));
    for out in [&a, &b] {
        let (ok, log) = oci_tool(&wasm_path, out, "1.2.3");
        assert!(ok, "{log}");
    }

    // The layout: oci-layout, index.json, and nothing in blobs/sha256 but the three blobs.
    assert_eq!(
        json_of(&fs::read(a.join("oci-layout")).unwrap()),
        json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = json_of(&fs::read(a.join("index.json")).unwrap());
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], INDEX);
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1);
    let desc = &manifests[0];
    assert_eq!(desc["mediaType"], MANIFEST);
    assert_eq!(desc["annotations"]["org.opencontainers.image.ref.name"], "1.2.3");

    // The manifest: Istio's "oci" variant (pkg/wasm/imagefetcher.go, extractOCIArtifactImage):
    // exactly two layers, one of them the module, unchanged.
    let manifest_bytes = blob(&a, desc);
    let manifest = json_of(&manifest_bytes);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST);
    assert_eq!(manifest["annotations"]["org.opencontainers.image.version"], "1.2.3");
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG);
    let runtime_config = json_of(&blob(&a, &manifest["config"]));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "Istio reads exactly two layers");
    assert_eq!(layers[0]["mediaType"], WASM_CONFIG);
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "runtime-config.json"
    );
    assert_eq!(json_of(&blob(&a, &layers[0])), runtime_config);
    assert_eq!(layers[1]["mediaType"], WASM_LAYER);
    assert_eq!(
        layers[1]["annotations"]["org.opencontainers.image.title"],
        "plugin.wasm"
    );
    assert!(
        blob(&a, &layers[1]) == wasm,
        "the layer is the built .wasm, byte for byte"
    );

    // The runtime config names the root id Envoy's config uses and the ABI the module exports.
    assert_eq!(runtime_config["type"], "envoy_proxy");
    assert_eq!(
        runtime_config["config"]["root_ids"],
        json!([edge_auth_e2e::envoy::PLUGIN_NAME])
    );
    let abi = runtime_config["abi_version"].as_str().expect("abi_version");
    let exports = edge_auth_wasm_trim::export_names(&wasm).expect("a wasm module");
    let abi_export = format!("proxy_abi_version_{}", abi.replace('.', "_"));
    assert!(exports.contains(&abi_export), "{abi_export} not in {exports:?}");

    let mut files: Vec<String> = fs::read_dir(a.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut named: Vec<String> = [desc, &manifest["config"], &layers[1]]
        .iter()
        .map(|d| d["digest"].as_str().unwrap()[7..].to_string())
        .collect();
    named.sort();
    assert_eq!(files, named, "no stray blobs");

    // Reproducible: the second run wrote the same bytes, so the same manifest digest.
    for file in ["oci-layout", "index.json"] {
        assert_eq!(
            fs::read(a.join(file)).unwrap(),
            fs::read(b.join(file)).unwrap(),
            "{file}"
        );
    }
    for name in &files {
        let path = format!("blobs/sha256/{name}");
        assert_eq!(
            fs::read(a.join(&path)).unwrap(),
            fs::read(b.join(&path)).unwrap(),
            "{path}"
        );
    }
    // A run over an old layout replaces it: nothing of the old image remains.
    let stray = a.join("blobs/sha256").join("0".repeat(64));
    fs::write(&stray, b"old").unwrap();
    let (ok, log) = oci_tool(&wasm_path, &a, "1.2.3");
    assert!(ok, "{log}");
    assert!(!stray.exists(), "an old blob survived");
    assert!(
        log.contains(desc["digest"].as_str().unwrap()),
        "prints the manifest digest: {log}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn oci_tool_refuses_what_is_not_the_filter() {
    let dir = scratch("refuse");
    let cases: [(&str, &[u8]); 4] = [
        ("empty.wasm", b""),
        ("text.wasm", b"not wasm at all"),
        ("truncated.wasm", b"\0asm\x01\0"),
        // a valid module header without the proxy-wasm ABI export
        ("bare.wasm", b"\0asm\x01\0\0\0"),
    ];
    for (name, bytes) in cases {
        let input = dir.join(name);
        fs::write(&input, bytes).unwrap();
        let out = dir.join(format!("{name}.oci"));
        let (ok, log) = oci_tool(&input, &out, "0.0.1");
        assert!(!ok, "{name} was packaged: {log}");
        assert!(!out.join("index.json").exists(), "{name} left a layout behind");
    }
    let (ok, _) = oci_tool(&dir.join("missing.wasm"), &dir.join("m.oci"), "0.0.1");
    assert!(!ok);
    let _ = fs::remove_dir_all(&dir);
}

/// The YAML fenced block of README.md that follows `marker` (a line of its own).
fn readme_block_after(marker: &str) -> String {
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no {marker:?}"));
    let rest = &readme[at..];
    let start = rest.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let len = rest[start..].find("```").expect("the block ends");
    rest[start..start + len].to_string()
}

fn yaml_file(relative: &str) -> (String, Value) {
    let text = fs::read_to_string(workspace_root().join(relative)).unwrap();
    let value: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
    (text, value)
}

/// The filter's configuration must compile, with the environment the file says it needs.
fn assert_config_compiles(config: &Value, secret_env: &str) {
    let bytes = config.to_string().into_bytes();
    let env = |name: &str| (name == secret_env).then(|| "s".repeat(32));
    if let Err(e) = edge_auth_core::config::parse(&bytes, &env) {
        panic!("the configuration is refused: {e:?}");
    }
}

#[test]
fn istio_wasmplugin_is_the_one_in_the_readme_and_names_the_image_the_filter_and_its_secret() {
    let (text, plugin) = yaml_file("envoy/istio/wasmplugin.yaml");
    // The README shows the file (without its leading comment lines), not a copy that drifts.
    let body: String = text
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(readme_block_after("envoy/istio/wasmplugin.yaml"), body);

    assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(plugin["kind"], "WasmPlugin");
    let spec = &plugin["spec"];
    let url = spec["url"].as_str().expect("spec.url");
    assert!(url.starts_with("oci://") && url.contains("/edge-auth:"), "{url}");
    // Istio sets the filter's root_id from pluginName: the one the image's runtime config names.
    assert_eq!(spec["pluginName"], edge_auth_e2e::envoy::PLUGIN_NAME);
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert!(["IfNotPresent", "Always"].contains(&spec["imagePullPolicy"].as_str().unwrap_or("")));
    let env = spec["vmConfig"]["env"].as_array().expect("vmConfig.env");
    assert_eq!(env.len(), 1);
    assert_eq!(
        env[0]["valueFrom"], "HOST",
        "the secret comes from the pod, not the resource"
    );
    let secret_env = env[0]["name"].as_str().unwrap();
    // Istio hands pluginConfig to the filter as JSON in a StringValue: it must be a valid configuration.
    assert_eq!(
        spec["pluginConfig"]["providers"][0]["hmac_secrets"][0]["env"],
        secret_env
    );
    assert_config_compiles(&spec["pluginConfig"], secret_env);
}

// ---------------------------------------------------------------- the dashboard's queries

/// Aggregation operators: followed by `by (...)`/`without (...)` or `(`, never metrics.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
/// Keywords followed by a label list.
const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
const KEYWORDS: &[&str] = &["bool", "offset", "and", "or", "unless", "inf", "nan"];

/// The metric names a PromQL expression selects: identifiers that are not
/// functions (followed by `(`), aggregations or keywords, not label names
/// inside `{...}` or `by (...)`, not durations or numbers, and not Grafana
/// variables (`$__rate_interval`). A `__name__` matcher is refused: every
/// metric must be named so that this check sees it.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let word_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' || c == '[' || c == '"' {
            let close = match c {
                '{' => '}',
                '[' => ']',
                _ => '"',
            };
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            let inside: String = chars[start..i.min(chars.len())].iter().collect();
            assert!(
                !inside.contains("__name__"),
                "{expr}: select metrics by name, not by __name__"
            );
            i += 1;
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // a Grafana variable, a number or a duration
            i += 1;
            while i < chars.len() && (word_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if word_char(c) {
            let start = i;
            while i < chars.len() && word_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if GROUPING.contains(&word.as_str()) {
                if next == Some(&'(') {
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                }
            } else if next != Some(&'(') && !AGGREGATIONS.contains(&word.as_str()) && !KEYWORDS.contains(&word.as_str())
            {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_of_promql() {
    let got = metric_names(
        "sum by (instance) (rate(edge_auth_a{job=\"x\"}[$__rate_interval])) / \
         (sum(increase(edge_auth_b[5m] offset 1m)) + on (job) max without (x) (edge_auth_c)) > bool 0.5e3 \
         or topk(3, edge_auth:d) unless sum(edge_auth_e) by (le)",
    );
    let want: BTreeSet<String> = [
        "edge_auth_a",
        "edge_auth_b",
        "edge_auth_c",
        "edge_auth:d",
        "edge_auth_e",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);
}

#[test]
#[should_panic(expected = "__name__")]
fn metric_names_refuses_name_matchers() {
    metric_names("sum(rate({__name__=~\"edge_auth_.*\"}[1m]))");
}

fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The metric names in Envoy's `/stats/prometheus` text (from `# TYPE` lines and samples).
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn drop_in_snippet_refuses_without_a_token_allows_with_one_and_exports_every_dashboard_metric() {
    // The snippet exactly as shipped, with only the module's path replaced.
    let (_, snippet) = yaml_file("envoy/edge-auth-filter.yaml");
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    assert!(
        readme.contains("envoy/edge-auth-filter.yaml"),
        "README points at the snippet"
    );
    let entries = snippet.as_array().expect("the snippet is a YAML list");
    assert_eq!(entries.len(), 1, "the snippet is one http_filters entry");
    let mut filter = entries[0].clone();
    let code = &mut filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"];
    assert_eq!(*code, "/etc/envoy/edge_auth.wasm");
    *code = json!(built_wasm().to_string_lossy());
    let config = &filter["typed_config"]["config"];
    let secret_env = config["vm_config"]["environment_variables"]["host_env_keys"][0]
        .as_str()
        .expect("a secret variable")
        .to_string();
    let plugin_config: Value = serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_config_compiles(&plugin_config, &secret_env);

    let echo = EchoServer::start();
    let secret = "drop-in-snippet-test-secret-0123456789abcdef";
    let opts = EnvoyOptions::new(json!({}), echo.port()).env(&secret_env, secret);
    let mut bootstrap = opts.bootstrap().unwrap_or_else(|e| panic!("{e}"));
    // the demo bootstrap's stats_tags, as the README's Dashboard section says to copy them
    let (_, demo) = yaml_file("envoy/envoy.yaml");
    bootstrap["stats_config"] = demo["stats_config"].clone();
    let filters = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"];
    assert_eq!(filters[0]["name"], "envoy.filters.http.wasm");
    filters[0] = filter;
    let envoy = Envoy::start_with_bootstrap(&opts, &bootstrap).unwrap_or_else(|e| panic!("{e}"));

    let r = envoy.get("/orders", &[]);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert!(r.header("www-authenticate").is_some());
    let key = TestKey::hmac(Alg::HS256, "unused", secret.as_bytes());
    let token = key.sign_with_kid(None, &tokens::claims("https://issuer.example", "api", "alice", 300));
    let bearer = format!("Bearer {token}");
    let r = envoy.get("/orders", &[("authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.summary());
    let wrong_aud = key.sign_with_kid(None, &tokens::claims("https://issuer.example", "other", "alice", 300));
    let r = envoy.get("/orders", &[("authorization", &format!("Bearer {wrong_aud}"))]);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(envoy.get("/health", &[]).status, 200);
    assert_eq!(echo.hits(), 2, "only the allowed requests reached the upstream");

    // Every metric the dashboard queries is one this Envoy exports.
    let dashboard: Value =
        serde_json::from_slice(&fs::read(workspace_root().join("dashboards/edge-auth.json")).unwrap()).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard's queries were not found: {exprs:?}");
    let exported = exported_names(&envoy.prometheus());
    assert!(exported.iter().any(|n| n.contains("edge_auth")), "{exported:?}");
    let mut missing = Vec::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr:?}");
        missing.extend(
            names
                .into_iter()
                .filter(|n| !exported.contains(n))
                .map(|n| format!("{n} (in {expr})")),
        );
    }
    assert!(missing.is_empty(), "not in /stats/prometheus: {missing:#?}");

    // And the reverse for refusals: every reason the filter counts is drawn, so a new
    // refusal cannot be left off the dashboard (the two shadow counters that stay at zero,
    // bad_path and bad_authority, are refused in shadow too, and not drawn).
    let queried: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let undrawn: Vec<&String> = exported
        .iter()
        .filter(|n| n.starts_with("edge_auth_denied_") || n.starts_with("edge_auth_shadow_denied_"))
        .filter(|n| {
            !matches!(
                n.as_str(),
                "edge_auth_shadow_denied_bad_path" | "edge_auth_shadow_denied_bad_authority"
            )
        })
        .filter(|n| !queried.contains(*n))
        .collect();
    assert!(
        exported.iter().any(|n| n.starts_with("edge_auth_shadow_denied_")),
        "no shadow counters exported: {exported:?}"
    );
    assert!(
        undrawn.is_empty(),
        "refusal counters the dashboard does not draw: {undrawn:#?}"
    );

    // The per-rule counters: one metric per verdict, labelled by rule (the stats_tags),
    // every one drawn, and no rule left with a flat name the dashboard would miss.
    let prom = envoy.prometheus();
    for verdict in ["allowed", "denied", "shadow_denied"] {
        let metric = format!("edge_auth_rule_{verdict}");
        assert!(queried.contains(&metric), "the dashboard does not draw {metric}");
        for rule in ["health", "api"] {
            let series = format!("{metric}{{rule=\"{rule}\"}} ");
            assert!(prom.contains(&series), "{series} not in /stats/prometheus");
        }
    }
    assert!(prom.contains("edge_auth_rule_allowed{rule=\"health\"} 1\n"), "{prom}");
    assert!(prom.contains("edge_auth_rule_allowed{rule=\"api\"} 1\n"), "{prom}");
    assert!(prom.contains("edge_auth_rule_denied{rule=\"api\"} 2\n"), "{prom}");
    let flat: Vec<&String> = exported
        .iter()
        .filter(|n| n.starts_with("edge_auth_rule_"))
        .filter(|n| {
            ![
                "edge_auth_rule_allowed",
                "edge_auth_rule_denied",
                "edge_auth_rule_shadow_denied",
            ]
            .contains(&n.as_str())
        })
        .collect();
    assert!(flat.is_empty(), "per-rule counters without a rule label: {flat:#?}");
}

/// The shell commands of the README walkthrough's block from the line starting with
/// `from` up to (not including) the line starting with `to` (or the block's end):
/// comments dropped, continued lines joined.
fn readme_commands(from: &str, to: Option<&str>) -> Vec<String> {
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let at = readme
        .find(&format!("\n{from}"))
        .unwrap_or_else(|| panic!("README.md has no {from:?}"));
    let rest = &readme[at + 1..];
    let block = &rest[..rest.find("```").expect("the block ends")];
    let block = to.map_or(block, |to| {
        &block[..block.find(&format!("\n{to}")).expect("the next step")]
    });
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in block
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
    {
        let line = if pending.is_empty() { line } else { line.trim_start() };
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => out.push(std::mem::take(&mut pending) + line),
        }
    }
    out
}

/// The value of `name` among the echoed request's headers.
fn echoed_header(echo: &Value, name: &str) -> Option<String> {
    echo["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
        .map(str::to_owned)
}

/// Stops the egress Envoy `envoy/demo.sh egress` started (README step 8), by its pid file.
struct EgressEnvoy(PathBuf);

impl Drop for EgressEnvoy {
    fn drop(&mut self) {
        if let Ok(pid) = fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// README steps 1, 6, 7 and 8 (a tenant; a machine client's token, refused once the client
/// is disabled; enabled again, machine-only and user-only routes; an egress Envoy that
/// fetches the client's token itself and injects it), run by bash exactly as the README
/// gives them, with only the ports and `.run/` this test's, against the filter
/// configuration of envoy/envoy.yaml, envoy/egress-demo.yaml as envoy/demo.sh starts it,
/// and the reference service.
#[test]
fn readme_machine_client_steps_run_against_the_demo_configuration() {
    let svc = AuthService::start_tagged();
    let echo = EchoServer::start();
    let (_, demo) = yaml_file("envoy/envoy.yaml");
    let hcm = &demo["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let mut filter = hcm["http_filters"][0].clone();
    assert_eq!(filter["name"], "envoy.filters.http.wasm");
    let config = &mut filter["typed_config"]["config"];
    config["vm_config"]["code"]["local"]["filename"] = json!(built_wasm().to_string_lossy());
    let svc_addr = format!("127.0.0.1:{}", svc.port);
    let value = config["configuration"]["value"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1:8090", &svc_addr);
    config["configuration"]["value"] = json!(value);
    let opts = EnvoyOptions::new(json!({}), echo.port())
        .cluster("auth_service", svc.port)
        .env("EDGE_AUTH_DEMO_HS256_SECRET", "readme-demo-secret-0123456789abcdef0123")
        .env("EDGE_AUTH_SERVICE_TOKEN", SERVICE_TOKEN)
        .env("EDGE_AUTH_KEY_TAG_SECRET", KEY_TAG_SECRET);
    let mut bootstrap = opts.bootstrap().unwrap_or_else(|e| panic!("{e}"));
    let filters = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"];
    filters[0] = filter;
    let envoy = Envoy::start_with_bootstrap(&opts, &bootstrap).unwrap_or_else(|e| panic!("{e}"));
    let ready = std::time::Duration::from_secs(15);
    for stat in [
        "wasmcustom.edge_auth.jwks.fetch_ok",
        "wasmcustom.edge_auth.revocation.poll_ok",
    ] {
        assert!(envoy.wait_for_stat(stat, ready, |n| n >= 1).is_some(), "{stat}");
    }

    let edge_addr = format!("127.0.0.1:{}", envoy.addr().port());
    let (egress_port, egress_admin_port) = (free_port(), free_port());
    let egress_addr = format!("127.0.0.1:{egress_port}");
    let egress_admin_addr = format!("127.0.0.1:{egress_admin_port}");
    let localize = |c: &str| -> String {
        c.replace("localhost:8090", &svc_addr)
            .replace("localhost:8080", &edge_addr)
            .replace("localhost:10001", &egress_addr)
            .replace("localhost:9902", &egress_admin_addr)
    };
    let mut commands = readme_commands("# 1.", Some("# 2."));
    commands.extend(readme_commands("# 6.", None));
    let commands: Vec<String> = commands.iter().map(|c| localize(c)).collect();
    let dir = scratch("walkthrough");
    fs::create_dir_all(dir.join(".run")).unwrap();
    fs::write(dir.join(".run/admin-token"), edge_auth_e2e::service::ADMIN_TOKEN).unwrap();
    // What `make run` leaves for step 8: envoy/ (demo.sh and egress-demo.yaml) beside .run/,
    // and the Envoy binary it runs.
    std::os::unix::fs::symlink(workspace_root().join("envoy"), dir.join("envoy")).unwrap();
    let envoy_bin = edge_auth_e2e::envoy::envoy_bin().unwrap_or_else(|e| panic!("{e}"));
    fs::write(dir.join(".run/envoy-bin"), envoy_bin.to_string_lossy().as_bytes()).unwrap();
    let egress = EgressEnvoy(dir.join(".run/egress.pid"));
    const MARK: &str = "@@@ next command @@@";
    let mut script: String = commands.iter().map(|c| format!("{c}\necho; echo '{MARK}'\n")).collect();
    // (not a README command) what step 6 got, for the checks that it was never shown
    script.push_str("printf '%s' \"$CLIENT_SECRET\" > .run/test-client-secret\n");
    let out = Command::new("bash")
        .args(["-u", "-c", &script])
        .current_dir(&dir)
        .env("EDGE_AUTH_WASM", built_wasm())
        .env("EDGE_AUTH_DEMO_EDGE_PORT", envoy.addr().port().to_string())
        .env("EDGE_AUTH_DEMO_SERVICE_PORT", svc.port.to_string())
        .env("EDGE_AUTH_DEMO_EGRESS_PORT", egress_port.to_string())
        .env("EDGE_AUTH_DEMO_EGRESS_ADMIN_PORT", egress_admin_port.to_string())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs: Vec<&str> = stdout.split(MARK).collect();
    assert_eq!(outputs.len(), commands.len() + 1, "{stdout}");
    // The output of the only command that is exactly `command` once ports are this test's.
    let output_of = |command: &str| -> &str {
        let command = localize(command);
        let at: Vec<usize> = (0..commands.len()).filter(|&i| commands[i] == command).collect();
        assert_eq!(at.len(), 1, "README step 6, 7 or 8 runs {command:?} once");
        outputs[at[0]].trim()
    };
    let outputs_of = |command: &str| -> Vec<&str> {
        let command = localize(command);
        (0..commands.len())
            .filter(|&i| commands[i] == command)
            .map(|i| outputs[i].trim())
            .collect()
    };
    let json_of = |text: &str| -> Value { serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}")) };

    // Step 6: the token passes, the upstream sees the client id; disabled, it is refused.
    let seen = json_of(output_of(
        r#"curl -s localhost:8080/hello -H "Authorization: Bearer $MACHINE""#,
    ));
    let client_id = echoed_header(&seen, "x-auth-subject").expect("x-auth-subject");
    assert!(client_id.starts_with("mc_") && client_id.len() == 29, "{client_id}");
    let refused = output_of(r#"sleep 3; curl -i localhost:8080/hello -H "Authorization: Bearer $MACHINE""#);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("the token has been revoked"), "{refused}");

    // Step 7: enabled again; the old token stays refused; a new one passes the
    // machine-only route as method client, and is refused on the user-only one.
    let enabled = json_of(output_of(
        r#"curl -s -X POST localhost:8090/admin/v1/clients/$CLIENT_ID/enable -H "$ADMIN""#,
    ));
    assert_eq!(
        (enabled["status"].as_str(), enabled["client_id"].as_str()),
        (Some("active"), Some(client_id.as_str()))
    );
    let old = output_of(r#"curl -i localhost:8080/internal/jobs -H "Authorization: Bearer $MACHINE""#);
    assert!(old.starts_with("HTTP/1.1 401") && old.contains("revoked"), "{old}");
    let seen = json_of(output_of(
        r#"curl -s localhost:8080/internal/jobs -H "Authorization: Bearer $MACHINE""#,
    ));
    let cid = client_id.as_str();
    // The upstream saw the machine client as the caller, and no credential.
    let as_the_client = |seen: &Value| {
        for (name, want) in [
            ("x-edge-auth-method", Some("client")),
            ("x-edge-auth-subject", Some(cid)),
            ("x-edge-auth-tenant", Some("acme")),
            ("authorization", None),
        ] {
            assert_eq!(echoed_header(seen, name).as_deref(), want, "{name}: {seen}");
        }
    };
    as_the_client(&seen);
    let user_only = output_of(
        r#"curl -i localhost:8080/api/orders -H "Authorization: Bearer $MACHINE" -H 'Origin: https://app.acme.example'"#,
    );
    assert!(user_only.starts_with("HTTP/1.1 403"), "{user_only}");
    assert!(user_only.contains("caller_not_allowed"), "{user_only}");
    // Two tokens were issued (steps 6 and 7), both as the README writes the request.
    assert_eq!(
        outputs_of(
            r#"MACHINE=$(curl -s -X POST localhost:8090/oauth/token -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"#
        )
        .len(),
        2
    );
    assert!(envoy.stat("wasmcustom.edge_auth.denied.caller_not_allowed") >= 1);

    // Step 8: the egress Envoy holds a token for the client; a plain request through it
    // reaches the machine-only route as the client, the same request sent directly is
    // refused, and the egress filter fetched one token and injected it once.
    let started = output_of(r#"EDGE_AUTH_EGRESS_CLIENT_SECRET="$CLIENT_SECRET" envoy/demo.sh egress "$CLIENT_ID""#);
    assert!(started.contains(&format!("holds a token for {client_id}")), "{started}");
    let through = output_of("curl -i localhost:10001/internal/jobs");
    assert!(through.starts_with("HTTP/1.1 200"), "{through}");
    let seen = json_of(through.split("\r\n\r\n").nth(1).unwrap_or_else(|| panic!("{through}")));
    as_the_client(&seen);
    let direct = output_of("curl -i localhost:8080/internal/jobs");
    assert!(direct.starts_with("HTTP/1.1 401"), "{direct}");
    assert!(direct.contains("www-authenticate: Bearer"), "{direct}");
    let stats = output_of("curl -s localhost:9902/stats | grep edge_auth.egress");
    for line in [
        "wasmcustom.edge_auth.egress.token_fetch_ok: 1",
        "wasmcustom.edge_auth.egress.injected: 1",
        "wasmcustom.edge_auth.egress.token_fetch_failed: 0",
        "wasmcustom.edge_auth.egress.refused_unavailable: 0",
        "wasmcustom.edge_auth.egress.unmatched: 0",
    ] {
        assert!(stats.lines().any(|l| l == line), "{line} in {stats}");
    }
    // (a fetch sent by the VM Envoy configures on its main thread, before the clusters are
    // initialised, never leaves Envoy: counted as sent; tests/e2e/egress_tokens.rs)
    assert!(
        ["1", "2"].iter().any(|n| stats
            .lines()
            .any(|l| l == format!("wasmcustom.edge_auth.egress.token_fetch_sent: {n}"))),
        "{stats}"
    );
    // and the service got exactly one token request from that Envoy
    let to_service = Command::new("curl")
        .args([
            "-s",
            &format!("http://{egress_admin_addr}/stats?filter=^cluster.auth_service.upstream_rq_total$"),
        ])
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&to_service.stdout).trim(),
        "cluster.auth_service.upstream_rq_total: 1"
    );
    // The secret of step 6 reached the egress Envoy only through its environment: it is
    // not in what the steps printed, the configuration demo.sh wrote, or that Envoy's log.
    let secret = fs::read_to_string(dir.join(".run/test-client-secret")).unwrap();
    assert!(secret.len() >= 32, "{secret:?}");
    let rendered = fs::read_to_string(dir.join(".run/egress.yaml")).unwrap();
    assert!(
        rendered.contains(&format!(r#""client_id": "{client_id}""#)),
        "{rendered}"
    );
    let log = fs::read_to_string(dir.join(".run/egress.log")).unwrap();
    for (what, text) in [("output", &stdout), ("egress.yaml", &rendered), ("egress.log", &log)] {
        assert!(!text.contains(&secret), "the client secret is in the {what}");
    }
    // The upstream saw exactly the three allowed requests.
    assert_eq!(echo.hits(), 3);
    drop(egress);
    let _ = fs::remove_dir_all(&dir);
}

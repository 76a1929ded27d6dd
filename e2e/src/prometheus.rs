//! A real Prometheus server for tests: Debian's `/usr/bin/prometheus` (or another build) on a
//! temp dir and a free loopback port, started from a configuration text, killed on drop; and
//! the HTTP API calls the checks use (instant query, label values, targets).
//!
//! Shared, not copied: `node/tests/observability.rs` includes this file with `#[path]` (its
//! Prometheus scrapes a local run through `file_sd`), and the tier-c tests use it through
//! `byzsgd_e2e::prometheus` (theirs discovers pods with `kubernetes_sd_configs`). So it uses
//! only the standard library and `serde_json`, which both crates have. A missing binary fails
//! the caller, never skips it.

// Each includer uses a different subset; in a test binary these items are private.
#![allow(dead_code, unreachable_pub)]

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

/// Debian's Prometheus (package `prometheus`).
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Its rule checker, same package.
pub const PROMTOOL: &str = "/usr/bin/promtool";
/// How to get both.
pub const INSTALL_HINT: &str = "install it with `scripts/setup --test` (Debian package prometheus)";

/// Percent-encodes a query-string value (RFC 3986 unreserved characters pass through).
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A plain HTTP/1.0 GET to `127.0.0.1:port` (the server closes the connection, no chunking):
/// returns status and body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A free loopback port: bound to port 0, read, released for the caller's server.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding 127.0.0.1:0")
}

/// Seconds since the Unix epoch, as Prometheus' `time` parameter takes them.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A Prometheus server on a temp dir; killed on drop.
pub struct Prometheus {
    child: Child,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Writes `config` (a `prometheus.yml`) into `dir`, starts Debian's Prometheus with its
    /// TSDB in `dir/data` on a free loopback port and waits until it is ready.
    pub fn start(dir: &Path, config: &str) -> Self {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: {INSTALL_HINT}"
        );
        Self::start_binary(Path::new(PROMETHEUS), dir, config)
    }

    /// Like [`Prometheus::start`], with another Prometheus binary (Debian's lacks Kubernetes
    /// discovery; `scripts/prometheus` builds one that has it).
    pub fn start_binary(binary: &Path, dir: &Path, config: &str) -> Self {
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        let port = free_port();
        let log = dir.join("prometheus.log");
        let stderr = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let child = Command::new(binary)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut prometheus = Self { child, port, log };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(self.port, "/-/ready") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 60 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What Prometheus logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Evaluates `expr` at `time` (Unix seconds): `Err` carries Prometheus' error for a bad
    /// expression.
    pub fn query(&self, expr: &str, time: f64) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}&time={time:.3}", encode(expr));
        let (status, body) = http_get(self.port, &path).map_err(|e| e.to_string())?;
        let json: Value =
            serde_json::from_str(&body).map_err(|e| format!("HTTP {status}, {e}: {body}"))?;
        if json["status"] != "success" {
            return Err(format!("HTTP {status}: {}", json["error"]));
        }
        Ok(json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The first series' value of `expr` at `time`, 0 when it returns nothing; panics on a
    /// bad expression.
    pub fn scalar(&self, expr: &str, time: f64) -> f64 {
        let series = self
            .query(expr, time)
            .unwrap_or_else(|e| panic!("`{expr}`: {e}"));
        series.first().map_or(0.0, |s| {
            s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        })
    }

    /// Values of `label` on series matching `selector`, as Grafana's `label_values()` asks.
    pub fn label_values(&self, label: &str, selector: &str) -> Vec<String> {
        let path = format!("/api/v1/label/{label}/values?match[]={}", encode(selector));
        let (status, body) = http_get(self.port, &path)
            .unwrap_or_else(|e| panic!("GET {path} from prometheus: {e}"));
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("HTTP {status}, not JSON ({e}): {body}"));
        assert_eq!(json["status"], "success", "HTTP {status}: {body}");
        json["data"]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The active targets (`/api/v1/targets`), as JSON objects.
    pub fn active_targets(&self) -> Vec<Value> {
        let (status, body) = http_get(self.port, "/api/v1/targets?state=active")
            .unwrap_or_else(|e| panic!("GET /api/v1/targets from prometheus: {e}"));
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("HTTP {status}, not JSON ({e}): {body}"));
        json["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

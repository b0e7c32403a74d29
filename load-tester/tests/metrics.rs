//! `--metrics-addr`, tested for real: promtool lints a live scrape; a real Prometheus scrapes a
//! run every second, and afterwards every PromQL expression of every panel of the Grafana
//! dashboard answers, the sent counter equals the results' count, and the P99 of
//! `histogram_quantile` lies within one bucket of the results' P99. Bad addresses fail before
//! the run. Without Prometheus the real-Prometheus tests print SKIPPED (and fail when CI=true).

mod common;

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_no_panic, describe, have_tool, Shm, BIN};

/// A process killed on drop, with its stderr in a file the test can watch.
struct Running {
    child: Child,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(mut cmd: Command) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("err");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .env("NO_COLOR", "1")
            .spawn()
            .expect("spawning");
        Self {
            child,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_for(&mut self, what: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let text = self.stderr();
            if text.contains(what) {
                return text;
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("ended ({s}) before saying {what:?}:\n{text}");
            }
            assert!(
                start.elapsed() < limit,
                "no {what:?} within {limit:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                start.elapsed() < limit,
                "did not end within {limit:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tester serving metrics on an ephemeral loopback port; returns it and the port.
fn tester(shm: &Shm, args: &[&str]) -> (Running, u16) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--shm-dir", shm.base.to_str().unwrap()])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .args(args);
    let mut r = Running::start(cmd);
    let text = r.wait_for("Metrics: http://", Duration::from_secs(20));
    let port = text
        .split("Metrics: http://127.0.0.1:")
        .nth(1)
        .and_then(|t| t.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a port");
    (r, port)
}

/// `GET path` on loopback `port`: (status, body).
fn get(port: u16, path: &str, accept: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head.to_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

fn found(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn promtool_accepts_a_live_scrape_and_openmetrics_is_served_when_asked() {
    if !have_tool(
        "promtool_accepts_a_live_scrape_and_openmetrics_is_served_when_asked",
        found("promtool"),
        "promtool is not installed (Debian: apt install prometheus)",
    ) {
        return;
    }
    let shm = Shm::new("lt-metrics-lint-");
    let (mut t, port) = tester(
        &shm,
        &[
            "-e",
            "2",
            "-d",
            "3",
            "--warmup-secs",
            "0",
            "--metrics-linger",
            "30",
        ],
    );
    t.wait_for("Serving the final metrics", Duration::from_secs(60));
    let (status, body) = get(port, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("alphapulse_sent_total{"), "{body}");
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool: {}", describe(&out));
    let (_, om) = get(port, "/metrics", Some("application/openmetrics-text"));
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    assert!(om.contains("# UNIT alphapulse_service_time_seconds seconds"));
    assert_eq!(get(port, "/other", None).0, 404);
}

/// A port nothing listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query of Prometheus at `time` (Unix seconds): its `data.result`.
fn query(port: u16, promql: &str, time: f64) -> Vec<serde_json::Value> {
    let path = format!("/api/v1/query?query={}&time={time:.3}", encode(promql));
    let (status, body) = get(port, &path, None);
    assert_eq!(status, 200, "{promql}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{promql}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(result: &[serde_json::Value]) -> f64 {
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}

/// The index of the bucket of `bucket_bounds` that holds `secs`.
fn bucket_of(secs: f64) -> usize {
    alphapulse_load_tester::output::metrics::bucket_bounds().partition_point(|&b| b < secs)
}

#[test]
fn a_real_prometheus_scrapes_a_run_and_every_dashboard_panel_answers() {
    let test = "a_real_prometheus_scrapes_a_run_and_every_dashboard_panel_answers";
    if !have_tool(
        test,
        found("prometheus"),
        "prometheus is not installed (Debian: apt install prometheus)",
    ) {
        return;
    }
    let shm = Shm::new("lt-metrics-prom-");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let (mut t, port) = tester(
        &shm,
        &[
            "-e",
            "2",
            "-d",
            "15",
            "--warmup-secs",
            "0",
            "--metrics-linger",
            "12",
            "--lag-budget-us",
            "60000000",
            "--json-output",
            json.to_str().unwrap(),
        ],
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: alphapulse\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let web = free_port();
    let mut prom = Command::new("prometheus");
    prom.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"));
    let mut p = Running::start(prom);
    let ready = Instant::now();
    while get_ok(web, "/-/ready").is_none() {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "Prometheus did not get ready:\n{}",
            p.stderr()
        );
        assert!(p.child.try_wait().unwrap().is_none(), "{}", p.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    t.wait_for("Serving the final metrics", Duration::from_secs(90));
    // Two more scrapes of the final values.
    std::thread::sleep(Duration::from_secs(3));
    let results = common::read_json(&json);
    let start = results["started_unix_ms"].as_f64().unwrap() / 1000.0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    // Every expression of every panel, its variables set to "all", during the run.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana/dashboards/alphapulse.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$exchange", ".*")
                .replace("$stream", ".*")
                .replace("$__rate_interval", "10s");
            // Late in the 15 s load, with a window that has scrapes however slowly Prometheus
            // started on a loaded machine (it starts after the tester).
            let at = if expr.contains("run_outcome") {
                now
            } else {
                start + 12.0
            };
            let r = query(web, &expr, at);
            assert!(
                !r.is_empty(),
                "panel {:?}: {expr} returned nothing",
                panel["title"]
            );
            // An answer, not a NaN (a quantile over buckets that did not move gives one).
            for series in &r {
                let v: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
                assert!(
                    v.is_finite(),
                    "panel {:?}: {expr} gave {v} for {}",
                    panel["title"],
                    series["metric"]
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} expressions");

    // The sent counter at the end is the results' count.
    let sent = value(&query(web, "sum(alphapulse_sent_total)", now));
    assert_eq!(
        sent as u64,
        results["throughput"]["total"]["sent"].as_u64().unwrap(),
        "the counter equals the JSON"
    );
    // The outcome is the verdict.
    let outcome = query(web, "alphapulse_run_outcome == 1", now);
    assert_eq!(
        outcome[0]["metric"]["outcome"], results["verdict"]["outcome"],
        "{outcome:?}"
    );
    // The P99 of the whole run from the buckets lies within one bucket of the results' P99.
    for (metric, json_path) in [
        ("service_time_seconds", ["latency", "service", "all"]),
        ("response_time_seconds", ["latency", "response", "all"]),
        ("generator_lag_seconds", ["latency", "lag", "all"]),
        ("end_to_end_latency_seconds", ["delivery", "e2e", "all"]),
    ] {
        let q = value(&query(
            web,
            &format!("histogram_quantile(0.99, sum by (le) (alphapulse_{metric}_bucket))"),
            now,
        ));
        let ours = results[json_path[0]][json_path[1]][json_path[2]]["p99"]
            .as_f64()
            .unwrap()
            / 1e9;
        let (a, b) = (bucket_of(q), bucket_of(ours));
        assert!(
            a.abs_diff(b) <= 1,
            "{metric}: histogram_quantile {q} s (bucket {a}) vs results {ours} s (bucket {b})"
        );
    }
    assert_eq!(t.wait(Duration::from_secs(90)).map(|_| ()), Some(()));
    assert_no_panic(&t.stderr());
}

fn get_ok(port: u16, path: &str) -> Option<()> {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    drop(s);
    (get(port, path, None).0 == 200).then_some(())
}

#[test]
fn bad_metrics_addresses_fail_before_the_run() {
    let shm = Shm::new("lt-metrics-bad-");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let cases: Vec<(String, &str)> = vec![
        (format!("127.0.0.1:{port}"), "choose another port"),
        ("no-such-host.invalid:9464".into(), "cannot resolve"),
        ("127.0.0.1:99999".into(), "cannot resolve"),
    ];
    for (addr, what) in cases {
        let start = Instant::now();
        let out = shm.run(&["--metrics-addr", &addr, "-d", "30"]);
        assert_eq!(out.status.code(), Some(2), "{addr}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(what), "{addr}: {stderr}");
        assert!(stderr.contains("--metrics-addr"), "{stderr}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "refused before the run"
        );
        assert_no_panic(&stderr);
    }
    shm.assert_empty();
}

#[test]
fn a_privileged_port_without_rights_is_refused() {
    let unprivileged_start: u32 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
    // The highest privileged port: 1023 on most hosts.
    let Some(port) = unprivileged_start.checked_sub(1).filter(|&p| p > 0) else {
        have_tool(
            "a_privileged_port_without_rights_is_refused",
            false,
            "every user may bind every port here (net.ipv4.ip_unprivileged_port_start is 0)",
        );
        return;
    };
    let shm = Shm::new("lt-metrics-priv-");
    let mut cmd = if rustix::process::geteuid().is_root() {
        // As root, drop to nobody for the test (the refusal comes before any file is touched).
        if !found("setpriv") {
            have_tool(
                "a_privileged_port_without_rights_is_refused",
                false,
                "setpriv is not installed (util-linux), needed to drop root",
            );
            return;
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let out = cmd
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "-d", "30"])
        .env("ALPHAPULSE_SHM_DIR", &shm.base)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr.contains(&format!("ports below {unprivileged_start} need privileges")),
        "{stderr}"
    );
}

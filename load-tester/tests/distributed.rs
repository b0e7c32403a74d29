//! Distributed runs through the binary: a coordinator and workers as separate processes on this
//! machine. The merged results are exactly the workers' added; a worker or a coordinator that
//! dies, a worker that is late, twice, wrongly authenticated or too far off in time, garbage on
//! the port, and a network cut (in network namespaces) each end the way docs/distributed.md
//! says, without a hang.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alphapulse_load_tester::distributed::protocol::{pb, PROTOCOL_VERSION};
use common::{alone, assert_no_panic, have_tool, shared, Shm, BIN};
use hdrhistogram::Histogram;

/// A load small enough for a busy 2-core machine, judged loosely: what these tests check is
/// the distributed machinery, not the machine.
const LOAD: &[&str] = &[
    "-t",
    "2000",
    "-o",
    "1000",
    "--warmup-secs",
    "0",
    "--lag-budget-us",
    "60000000",
];

/// A child process whose output goes to files that the test can watch while it runs. Killed on
/// drop.
struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

/// How a [`Proc`] ended.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ended {
    fn describe(&self, name: &str) -> String {
        format!(
            "{name}: status {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (stdout, stderr) = (dir.path().join("out"), dir.path().join("err"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .env_remove("ALPHAPULSE_TOKEN")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("ALPHAPULSE_CLOCK_SKEW_NS")
            .spawn()
            .expect("spawning load-tester");
        Self {
            name: name.into(),
            child,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until stderr contains `what`; fails the test after `limit`.
    fn wait_for(&mut self, what: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let text = self.stderr();
            if text.contains(what) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} ended ({status}) before saying {what:?}:\n{text}",
                    self.name
                );
            }
            assert!(
                start.elapsed() < limit,
                "{} did not say {what:?} within {limit:?}:\n{text}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the end; fails the test after `limit`.
    fn finish(&mut self, limit: Duration) -> Ended {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not finish within {limit:?}:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let ended = Ended {
            code: status.code(),
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: self.stderr(),
        };
        assert_no_panic(&ended.stderr);
        ended
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A coordinator of `workers` workers with `args`; returns it once it listens, and its port.
fn coordinator(shm: &Shm, workers: u32, args: &[&str]) -> (Proc, u16) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--mode", "coordinator", "--port", "0", "--workers"])
        .arg(workers.to_string())
        .args(args)
        .env("ALPHAPULSE_SHM_DIR", &shm.base);
    let mut p = Proc::spawn("coordinator", cmd);
    let text = p.wait_for("Listening on ", Duration::from_secs(20));
    let line = text
        .lines()
        .find(|l| l.starts_with("Listening on "))
        .unwrap();
    let addr = line["Listening on ".len()..].split(' ').next().unwrap();
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    (p, port)
}

/// A worker of the coordinator at `port` (on loopback), with `args`, its run directories under
/// `shm`.
fn worker(shm: &Shm, port: u16, index: u32, args: &[&str]) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["--mode", "worker", "--coordinator"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--worker-index", &index.to_string(), "--placement", "none"])
        .args(args)
        .env("ALPHAPULSE_SHM_DIR", &shm.base);
    Proc::spawn(&format!("worker {index}"), cmd)
}

fn load(extra: &[&str]) -> Vec<String> {
    LOAD.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn histogram(summary: &serde_json::Value) -> Histogram<u64> {
    alphapulse_load_tester::report::histogram::decode(summary["histogram"].as_str().unwrap())
        .expect("a histogram in the results")
}

/// The merged summary at `path` equals the union of the workers' at the same path.
fn assert_union(results: &serde_json::Value, path: &[&str]) {
    let at = |v: &serde_json::Value| path.iter().fold(v.clone(), |v, k| v[*k].clone());
    let merged = at(results);
    let mut union = alphapulse_load_tester::report::histogram::new_histogram();
    for w in results["workers"]["workers"].as_array().unwrap() {
        union.add(histogram(&at(&w["results"]))).unwrap();
    }
    let ours = histogram(&merged);
    assert_eq!(ours, union, "{path:?}: the merged histogram is the union");
    for (key, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
        assert_eq!(
            merged[key].as_u64().unwrap(),
            union.value_at_quantile(q),
            "{path:?} {key}"
        );
    }
    assert_eq!(merged["count"].as_u64().unwrap(), union.len(), "{path:?}");
    assert_eq!(merged["max"].as_u64().unwrap(), union.max(), "{path:?}");
}

fn run_two(shm: &Shm, extra: &[&str]) -> (serde_json::Value, Vec<Ended>) {
    run_two_with(shm, &strs(&load(extra)))
}

/// A coordinator with exactly `given` and two workers, to the end: the merged results, and how
/// each process ended (coordinator first).
fn run_two_with(shm: &Shm, given: &[&str]) -> (serde_json::Value, Vec<Ended>) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("merged.json");
    let mut args: Vec<String> = given.iter().map(|s| s.to_string()).collect();
    if !given.contains(&"--lag-budget-us") {
        args.extend(["--lag-budget-us".into(), "60000000".into()]);
    }
    args.extend(["--json-output".into(), json.display().to_string()]);
    let (mut c, port) = coordinator(shm, 2, &strs(&args));
    let mut w0 = worker(shm, port, 0, &[]);
    let mut w1 = worker(shm, port, 1, &[]);
    let ended = vec![
        c.finish(Duration::from_secs(90)),
        w0.finish(Duration::from_secs(20)),
        w1.finish(Duration::from_secs(20)),
    ];
    let code = ended[0].code;
    assert!(
        matches!(code, Some(0 | 1 | 3)),
        "{}",
        ended[0].describe("coordinator")
    );
    for (i, e) in ended[1..].iter().enumerate() {
        assert_eq!(
            e.code,
            code,
            "a worker exits with the run's status\n{}",
            e.describe(&format!("worker {i}"))
        );
    }
    (common::read_json(&json), ended)
}

#[test]
fn merged_results_are_exactly_the_workers_added() {
    let _machine = shared();
    let shm = Shm::new("lt-dist-merge-");
    // Three exchanges over two workers: whole exchanges each, one worker with two.
    let (r, ended) = run_two(&shm, &["-e", "3", "-d", "3"]);
    let w = &r["workers"];
    assert_eq!(w["split"], "exchanges", "{w}");
    let workers = w["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let mut exchanges: Vec<u64> = workers
        .iter()
        .flat_map(|x| x["exchanges"].as_array().unwrap().clone())
        .map(|e| e.as_u64().unwrap())
        .collect();
    exchanges.sort_unstable();
    assert_eq!(exchanges, vec![0, 1, 2], "every exchange runs once");
    let sum = |f: &dyn Fn(&serde_json::Value) -> u64| -> u64 {
        workers.iter().map(|x| f(&x["results"])).sum()
    };
    for stream in ["trades", "book", "total"] {
        let merged = r["throughput"][stream]["sent"].as_u64().unwrap();
        assert!(merged > 0, "{stream}");
        assert_eq!(
            merged,
            sum(&|x| x["throughput"][stream]["sent"].as_u64().unwrap()),
            "{stream} sent is the workers' sum"
        );
    }
    assert_eq!(
        r["errors"]["attempts"].as_u64(),
        Some(sum(&|x| x["errors"]["attempts"].as_u64().unwrap()))
    );
    let d = &r["delivery"];
    assert_eq!(d["readers"].as_u64(), Some(2), "{d}");
    let received: u64 = d["streams"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["received"].as_u64().unwrap())
        .sum();
    assert_eq!(
        received,
        r["throughput"]["total"]["sent"].as_u64().unwrap(),
        "each worker's reader received what its worker wrote"
    );
    for kind in ["service", "response", "lag"] {
        for stream in ["trades", "book", "all"] {
            assert_union(&r, &["latency", kind, stream]);
        }
    }
    assert_union(&r, &["delivery", "e2e", "all"]);
    for x in workers {
        assert!(x["clock_offset_ns"].is_i64(), "{x}");
        assert!(x["lost"].is_null(), "{x}");
    }
    assert!(w["coordinator_cpu_pct"].as_f64().unwrap() >= 0.0);
    assert!(ended[0].stdout.contains("Workers (2, split by exchanges"));
    shm.assert_empty();
}

#[test]
fn fewer_exchanges_than_workers_split_the_rates_exactly() {
    let _machine = shared();
    let shm = Shm::new("lt-dist-rates-");
    // 1 exchange at 2,001 trades/s over two workers: shares of 1,000 and 1,001.
    let (r, _) = run_two_with(
        &shm,
        &[
            "-e",
            "1",
            "-t",
            "2001",
            "-o",
            "0",
            "-d",
            "2",
            "--warmup-secs",
            "0",
        ],
    );
    assert_eq!(r["workers"]["split"], "rates");
    let rates: Vec<u64> = r["workers"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["target_rate"].as_u64().unwrap())
        .collect();
    assert_eq!(rates.iter().sum::<u64>(), 2001, "{rates:?}");
    assert!(rates.contains(&1000) && rates.contains(&1001), "{rates:?}");
    let t = &r["throughput"]["trades"];
    let due = t["sent"].as_u64().unwrap() + t["backlog"].as_u64().unwrap();
    assert_eq!(
        due,
        2 * 2001,
        "two seconds of the whole rate were due, to the message: {t}"
    );
    shm.assert_empty();
}

#[test]
fn a_killed_worker_makes_the_run_invalid_names_it_and_stops_the_others() {
    // How soon a loss is noticed is what it measures: nothing else of this file runs beside it.
    let _machine = alone();
    let shm = Shm::new("lt-dist-kill-");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let mut args = load(&["-e", "2", "-d", "60"]);
    args.extend(["--json-output".into(), json.display().to_string()]);
    let (mut c, port) = coordinator(&shm, 2, &strs(&args));
    let mut w0 = worker(&shm, port, 0, &[]);
    let mut w1 = worker(&shm, port, 1, &[]);
    w0.wait_for("the load starts", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(4));
    w1.kill();
    let killed = Instant::now();
    // The run's verdict (the report's status line), then the exit: within 5 s of it.
    let report_at = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&c.stdout)
        .unwrap_or_default()
        .contains("Status:")
    {
        assert!(
            Instant::now() < report_at,
            "no verdict within 20 s of the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let judged = Instant::now();
    let ended = c.finish(Duration::from_secs(30));
    let (took, after_verdict) = (killed.elapsed(), judged.elapsed());
    assert_eq!(ended.code, Some(3), "{}", ended.describe("coordinator"));
    assert!(
        took < Duration::from_secs(15),
        "the coordinator took {took:?}"
    );
    assert!(
        after_verdict < Duration::from_secs(5),
        "the coordinator exited {after_verdict:?} after its verdict"
    );
    assert!(
        ended.stderr.contains("worker 1 (") && ended.stderr.contains("lost"),
        "{}",
        ended.describe("coordinator")
    );
    assert!(ended.stdout.contains("LOST"), "{}", ended.stdout);
    let w0_end = w0.finish(Duration::from_secs(10));
    assert_eq!(w0_end.code, Some(3), "{}", w0_end.describe("worker 0"));
    let r = common::read_json(&json);
    assert_eq!(r["verdict"]["outcome"], "invalid");
    assert!(r["verdict"]["invalid_reason"]
        .as_str()
        .unwrap()
        .contains("worker 1"));
    let lost = &r["workers"]["workers"][1]["lost"];
    assert!(lost["at_secs"].as_f64().unwrap() > 2.0, "{lost}");
    assert!(
        lost["reason"].as_str().unwrap().contains("stream"),
        "{lost}"
    );
    assert!(
        r["throughput"]["total"]["sent"].as_u64().unwrap() > 0,
        "what was measured up to then is kept"
    );
}

#[test]
fn a_killed_coordinator_stops_every_worker_and_its_shared_memory_goes() {
    // How soon a loss is noticed is what it measures: nothing else of this file runs beside it.
    let _machine = alone();
    let shm = Shm::new("lt-dist-coordkill-");
    let (mut c, port) = coordinator(&shm, 2, &strs(&load(&["-e", "2", "-d", "60"])));
    let mut w0 = worker(&shm, port, 0, &[]);
    let mut w1 = worker(&shm, port, 1, &[]);
    w0.wait_for("the load starts", Duration::from_secs(30));
    w1.wait_for("the load starts", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    c.kill();
    let killed = Instant::now();
    for (i, w) in [&mut w0, &mut w1].into_iter().enumerate() {
        let e = w.finish(Duration::from_secs(15));
        let took = killed.elapsed();
        // Well short of the 60 s the run would have lasted; long enough for a loaded machine.
        assert!(took < Duration::from_secs(10), "worker {i} took {took:?}");
        assert_eq!(e.code, Some(2), "{}", e.describe("worker"));
        let errors: Vec<&str> = e
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", e.describe("worker"));
        assert!(errors[0].contains("lost the coordinator"), "{errors:?}");
    }
    shm.assert_empty();
}

#[test]
fn late_twice_and_wrongly_authenticated_workers_are_refused() {
    let _machine = shared();
    let shm = Shm::new("lt-dist-refuse-");
    let mut args = load(&["-e", "2", "-d", "4"]);
    args.extend(["--token".into(), "s3cret".into()]);
    let (mut c, port) = coordinator(&shm, 2, &strs(&args));
    let refused = |mut p: Proc, what: &str| {
        let e = p.finish(Duration::from_secs(20));
        assert_eq!(e.code, Some(2), "{}", e.describe("refused worker"));
        assert!(e.stderr.contains(what), "{}", e.describe("refused worker"));
    };
    refused(worker(&shm, port, 7, &["--token", "guess"]), "wrong token");
    refused(worker(&shm, port, 7, &[]), "wrong token");
    let mut w0 = worker(&shm, port, 0, &["--token", "s3cret"]);
    w0.wait_for("joined as worker", Duration::from_secs(20));
    refused(
        worker(&shm, port, 0, &["--token", "s3cret"]),
        "has joined already",
    );
    let mut w1 = worker(&shm, port, 1, &["--token", "s3cret"]);
    w1.wait_for("the load starts", Duration::from_secs(30));
    refused(worker(&shm, port, 2, &["--token", "s3cret"]), "has started");
    let e = c.finish(Duration::from_secs(60));
    assert!(
        matches!(e.code, Some(0 | 1 | 3)),
        "{}",
        e.describe("coordinator")
    );
    assert!(e.stderr.contains("refused"), "{}", e.stderr);
    w0.finish(Duration::from_secs(10));
    w1.finish(Duration::from_secs(10));
    shm.assert_empty();
}

#[test]
fn a_clock_beyond_the_budget_refuses_to_start() {
    let _machine = shared();
    let shm = Shm::new("lt-dist-clock-");
    let (mut c, port) = coordinator(&shm, 1, &strs(&load(&["-e", "1", "-d", "2"])));
    let mut cmd = Command::new(BIN);
    cmd.args(["--mode", "worker", "--placement", "none", "--coordinator"])
        .arg(format!("127.0.0.1:{port}"))
        .env("ALPHAPULSE_SHM_DIR", &shm.base);
    // This worker's clock reads 50 ms behind the coordinator's.
    let mut w = spawn_with_env(cmd, "ALPHAPULSE_CLOCK_SKEW_NS", "-50000000");
    let ce = c.finish(Duration::from_secs(30));
    assert_eq!(ce.code, Some(2), "{}", ce.describe("coordinator"));
    assert!(
        ce.stderr.contains("ms off the coordinator's") && ce.stderr.contains("budget"),
        "{}",
        ce.stderr
    );
    let we = w.finish(Duration::from_secs(10));
    assert_eq!(we.code, Some(2), "{}", we.describe("worker"));
    assert!(we.stderr.contains("did not start"), "{}", we.stderr);
    shm.assert_empty();
}

/// [`Proc::spawn`] with one variable it would otherwise clear.
fn spawn_with_env(mut cmd: Command, key: &str, value: &str) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (dir.path().join("out"), dir.path().join("err"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .env("NO_COLOR", "1")
        .env(key, value)
        .spawn()
        .unwrap();
    Proc {
        name: format!("worker with {key}={value}"),
        child,
        stdout,
        stderr,
        _dir: dir,
    }
}

#[test]
fn not_every_worker_joining_in_time_is_one_clear_error_on_both_sides() {
    let _machine = shared();
    let shm = Shm::new("lt-dist-join-");
    let mut args = load(&["-e", "2", "-d", "2"]);
    // Long enough for worker 0 to join on a loaded machine before the coordinator gives up.
    args.extend(["--join-timeout-secs".into(), "10".into()]);
    let (mut c, port) = coordinator(&shm, 2, &strs(&args));
    let mut w0 = worker(&shm, port, 0, &[]);
    let ce = c.finish(Duration::from_secs(30));
    assert_eq!(ce.code, Some(2), "{}", ce.describe("coordinator"));
    assert!(ce.stderr.contains("1 of 2 workers joined"), "{}", ce.stderr);
    let we = w0.finish(Duration::from_secs(10));
    assert_eq!(we.code, Some(2), "{}", we.describe("worker"));
    assert!(we.stderr.contains("1 of 2 workers joined"), "{}", we.stderr);
    shm.assert_empty();
}

#[test]
fn a_worker_without_a_coordinator_gives_up_after_its_join_timeout() {
    let _machine = shared();
    let shm = Shm::new("lt-dist-nocoord-");
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut w = worker(&shm, port, 0, &["--join-timeout-secs", "2"]);
    let e = w.finish(Duration::from_secs(15));
    assert_eq!(e.code, Some(2), "{}", e.describe("worker"));
    assert!(
        e.stderr.contains("cannot reach the coordinator"),
        "{}",
        e.stderr
    );
    shm.assert_empty();
}

/// Sends `hello` as a session's first message to the coordinator at `port` and returns what it
/// answered (a refusal's reason), or the error of the call.
fn hello(port: u16, hello: pb::Hello) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut client =
            pb::coordinator_client::CoordinatorClient::connect(format!("http://127.0.0.1:{port}"))
                .await
                .map_err(|e| e.to_string())?
                .max_encoding_message_size(64 << 20);
        let first = pb::WorkerMessage {
            body: Some(pb::worker_message::Body::Hello(hello)),
        };
        let out = tokio_stream::iter(vec![first]);
        let mut inbound = client
            .session(out)
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
            Ok(Ok(Some(pb::CoordinatorMessage {
                body: Some(pb::coordinator_message::Body::Refused(r)),
            }))) => Ok(r.reason),
            Ok(Ok(None)) => Err("the stream ended without an answer".into()),
            Ok(Ok(other)) => Err(format!("not a refusal: {other:?}")),
            Ok(Err(s)) => Err(s.message().to_string()),
            Err(_) => Err("no answer".into()),
        }
    })
}

fn good_hello(identity: &str) -> pb::Hello {
    pb::Hello {
        protocol_version: PROTOCOL_VERSION,
        token: String::new(),
        identity: identity.into(),
        host: "test".into(),
        pid: 1,
        histograms: Some(pb::HistogramConfig {
            lowest: 1,
            highest: 60_000_000_000,
            significant_figures: 3,
        }),
        tool_version: "test".into(),
        worker_index: None,
    }
}

#[test]
fn garbage_foreign_and_oversized_messages_on_the_port_are_refused() {
    let _machine = shared();
    use std::io::{Read as _, Write as _};
    let shm = Shm::new("lt-dist-garbage-");
    let (mut c, port) = coordinator(&shm, 1, &strs(&load(&["-e", "1", "-d", "2"])));
    // Bytes that are no HTTP/2 at all, an HTTP/1 request, a half-open connection.
    for junk in [
        &b"\x00\xffgarbage\x13\x37 not a preface"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00\xff\xff\xff\xff",
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(junk);
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
    }
    let _idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Well-formed gRPC that is not acceptable.
    let mut old = good_hello("old");
    old.protocol_version = 99;
    assert!(hello(port, old).unwrap().contains("protocol version 99"));
    let mut foreign = good_hello("foreign");
    foreign.histograms = Some(pb::HistogramConfig {
        lowest: 1,
        highest: 1_000,
        significant_figures: 2,
    });
    assert!(hello(port, foreign)
        .unwrap()
        .contains("histogram configuration"));
    let mut huge = good_hello("huge");
    huge.token = "x".repeat(20 << 20);
    let e = hello(port, huge).unwrap_err();
    assert!(
        e.to_lowercase().contains("message") || e.contains("length") || e.contains("ended"),
        "an oversized message is refused by the transport: {e}"
    );
    // The coordinator is still there, and runs a real worker.
    let mut w = worker(&shm, port, 0, &[]);
    let ce = c.finish(Duration::from_secs(60));
    assert!(
        matches!(ce.code, Some(0 | 1 | 3)),
        "{}",
        ce.describe("coordinator")
    );
    assert!(ce.stderr.contains("refused"), "{}", ce.stderr);
    let we = w.finish(Duration::from_secs(10));
    assert_eq!(we.code, ce.code, "{}", we.describe("worker"));
    shm.assert_empty();
}

/// A CA, and a certificate for `localhost` and 127.0.0.1 signed by it, as PEM files in `dir`:
/// the paths of (ca, cert, key), as the flags take them.
fn certificates(dir: &Path) -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alphapulse test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    let text = |p: PathBuf| p.display().to_string();
    (text(paths.0), text(paths.1), text(paths.2))
}

#[test]
fn tls_with_a_certificate_made_here_and_a_worker_without_tls_refused() {
    let _machine = shared();
    let shm = Shm::new("lt-dist-tls-");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let mut args = load(&["-e", "1", "-d", "2"]);
    args.extend(["--tls-cert".into(), cert, "--tls-key".into(), key]);
    let (mut c, port) = coordinator(&shm, 1, &strs(&args));
    let mut plain = worker(&shm, port, 9, &["--join-timeout-secs", "2"]);
    let pe = plain.finish(Duration::from_secs(20));
    assert_eq!(pe.code, Some(2), "{}", pe.describe("plain worker"));
    let mut w = worker(
        &shm,
        port,
        0,
        &["--tls-ca", &ca, "--tls-domain", "localhost"],
    );
    let ce = c.finish(Duration::from_secs(60));
    assert!(
        matches!(ce.code, Some(0 | 1 | 3)),
        "{}",
        ce.describe("coordinator")
    );
    let we = w.finish(Duration::from_secs(10));
    assert_eq!(we.code, ce.code, "{}", we.describe("TLS worker"));
    shm.assert_empty();
}

#[test]
fn a_coordinator_that_requires_client_certificates_admits_only_signed_workers() {
    let _machine = shared();
    let shm = Shm::new("lt-dist-mtls-");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    // --tls-ca on the coordinator: workers must present a certificate this CA signed.
    let mut args = load(&["-e", "1", "-d", "2"]);
    args.extend([
        "--tls-cert".into(),
        cert.clone(),
        "--tls-key".into(),
        key.clone(),
        "--tls-ca".into(),
        ca.clone(),
    ]);
    let (mut c, port) = coordinator(&shm, 1, &strs(&args));
    // Trusts the coordinator, but has no certificate of its own to show.
    let mut anonymous = worker(
        &shm,
        port,
        9,
        &[
            "--tls-ca",
            &ca,
            "--tls-domain",
            "localhost",
            "--join-timeout-secs",
            "2",
        ],
    );
    let ae = anonymous.finish(Duration::from_secs(20));
    assert_eq!(
        ae.code,
        Some(2),
        "{}",
        ae.describe("worker without a certificate")
    );
    let errors: Vec<&str> = ae
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "{}",
        ae.describe("worker without a certificate")
    );
    assert!(
        errors[0].contains("--tls-cert and --tls-key"),
        "says what to add: {}",
        errors[0]
    );
    // The same certificate serves as the worker's identity: the CA signed it, and it names
    // no key usage that would forbid a client.
    let mut signed = worker(
        &shm,
        port,
        0,
        &[
            "--tls-ca",
            &ca,
            "--tls-domain",
            "localhost",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    let ce = c.finish(Duration::from_secs(60));
    assert!(
        matches!(ce.code, Some(0 | 1 | 3)),
        "{}",
        ce.describe("coordinator")
    );
    let se = signed.finish(Duration::from_secs(10));
    assert!(
        se.stderr.contains("joined as worker 0 of 1"),
        "{}",
        se.describe("signed worker")
    );
    assert_eq!(se.code, ce.code, "{}", se.describe("signed worker"));
    shm.assert_empty();
}

/// Two network namespaces, each with a veth pair to this one; removed on drop.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    fn ip(args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Namespace `i` is `apd<pid>-<i>` at 10.213.<i>.2, its host side `apv<pid>h<i>` at
    /// 10.213.<i>.1.
    fn create(count: usize) -> Result<Self, String> {
        let pid = std::process::id() % 100_000;
        let mut ns = Namespaces { names: Vec::new() };
        for i in 0..count {
            let name = format!("apd{pid}-{i}");
            let (host, peer) = (format!("apv{pid}h{i}"), format!("apv{pid}p{i}"));
            Self::ip(&["netns", "add", &name])?;
            ns.names.push(name.clone());
            Self::ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
            Self::ip(&["link", "set", &peer, "netns", &name])?;
            Self::ip(&["addr", "add", &format!("10.213.{i}.1/24"), "dev", &host])?;
            Self::ip(&["link", "set", &host, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", name.as_str(), "ip"];
                all.extend_from_slice(args);
                Self::ip(&all)
            };
            inside(&["addr", "add", &format!("10.213.{i}.2/24"), "dev", &peer])?;
            inside(&["link", "set", &peer, "up"])?;
            inside(&["link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    fn host_link(i: usize) -> String {
        format!("apv{}h{i}", std::process::id() % 100_000)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for (i, n) in self.names.iter().enumerate() {
            let _ = Self::ip(&["link", "del", &Self::host_link(i)]);
            let _ = Self::ip(&["netns", "del", n]);
        }
    }
}

/// A worker that stops answering (SIGSTOP: its connection stays open, nothing comes) is lost
/// after three silent intervals, as a cut link is, on any machine.
#[test]
fn a_silent_worker_is_lost_and_when_it_wakes_it_stops() {
    // How soon a loss is noticed is what it measures: nothing else of this file runs beside it.
    let _machine = alone();
    let shm = Shm::new("lt-dist-silent-");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let mut args = load(&["-e", "2", "-d", "60"]);
    args.extend(["--json-output".into(), json.display().to_string()]);
    let (mut c, port) = coordinator(&shm, 2, &strs(&args));
    let mut w0 = worker(&shm, port, 0, &[]);
    let mut w1 = worker(&shm, port, 1, &[]);
    w0.wait_for("the load starts", Duration::from_secs(30));
    w1.wait_for("the load starts", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let pid = libc::pid_t::try_from(w1.child.id()).unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child, not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let stopped = Instant::now();
    let ce = c.finish(Duration::from_secs(30));
    let took = stopped.elapsed();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(ce.code, Some(3), "{}", ce.describe("coordinator"));
    assert!(
        took < Duration::from_secs(15),
        "the coordinator took {took:?}"
    );
    assert!(
        ce.stderr.contains("worker 1 (") && ce.stderr.contains("silent"),
        "{}",
        ce.stderr
    );
    let w0_end = w0.finish(Duration::from_secs(10));
    assert_eq!(w0_end.code, Some(3), "{}", w0_end.describe("worker 0"));
    // Woken, the silent worker finds its coordinator gone, stops and cleans up.
    let w1_end = w1.finish(Duration::from_secs(15));
    assert!(
        w1_end.code.is_some_and(|c| c != 0),
        "{}",
        w1_end.describe("worker 1")
    );
    assert_no_panic(&w1_end.stderr);
    let r = common::read_json(&json);
    assert!(r["workers"]["workers"][1]["lost"]["reason"]
        .as_str()
        .unwrap()
        .contains("silent"));
    shm.assert_empty();
}

#[test]
fn a_network_cut_is_a_lost_worker_and_the_cut_worker_stops() {
    // How soon a loss is noticed is what it measures: nothing else of this file runs beside it.
    let _machine = alone();
    let is_root = rustix::process::geteuid().is_root();
    let namespaces = if is_root {
        Namespaces::create(2)
    } else {
        Err("not root".into())
    };
    let ns = match namespaces {
        Ok(ns) => ns,
        Err(why) => {
            have_tool(
                "a_network_cut_is_a_lost_worker_and_the_cut_worker_stops",
                false,
                &format!("network namespaces cannot be made here ({why})"),
            );
            return;
        }
    };
    let shm = Shm::new("lt-dist-netns-");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let mut args = load(&[
        "-e", "2", "-d", "60", "--bind", "0.0.0.0", "--token", "netns",
    ]);
    args.extend(["--json-output".into(), json.display().to_string()]);
    let (mut c, port) = coordinator(&shm, 2, &strs(&args));
    let mut workers: Vec<Proc> = (0..2)
        .map(|i| {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &ns.names[i], BIN, "--mode", "worker"])
                .args(["--coordinator", &format!("10.213.{i}.1:{port}")])
                .args(["--worker-index", &i.to_string(), "--placement", "none"])
                .args(["--token", "netns"])
                .env("ALPHAPULSE_SHM_DIR", &shm.base);
            Proc::spawn(&format!("worker {i} in {}", ns.names[i]), cmd)
        })
        .collect();
    for w in &mut workers {
        w.wait_for("the load starts", Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_secs(3));
    Namespaces::ip(&["link", "set", &Namespaces::host_link(1), "down"]).unwrap();
    let cut = Instant::now();
    let ce = c.finish(Duration::from_secs(30));
    assert_eq!(ce.code, Some(3), "{}", ce.describe("coordinator"));
    assert!(
        cut.elapsed() < Duration::from_secs(15),
        "{:?}",
        cut.elapsed()
    );
    assert!(
        ce.stderr.contains("worker 1 (") && ce.stderr.contains("silent"),
        "{}",
        ce.stderr
    );
    let w1 = workers[1].finish(Duration::from_secs(10));
    assert!(
        cut.elapsed() < Duration::from_secs(15),
        "{:?}",
        cut.elapsed()
    );
    assert_eq!(w1.code, Some(2), "{}", w1.describe("cut worker"));
    assert!(w1.stderr.contains("lost the coordinator"), "{}", w1.stderr);
    let w0 = workers[0].finish(Duration::from_secs(10));
    assert_eq!(w0.code, Some(3), "{}", w0.describe("worker 0"));
    let r = common::read_json(&json);
    assert!(r["workers"]["workers"][1]["lost"]["reason"]
        .as_str()
        .unwrap()
        .contains("silent"));
    shm.assert_empty();
}

//! The datagram transports through the binary: UDP and Unix datagram feeds deliver every
//! record with the bus's checks; impairment is counted exactly by the readers; foreign
//! datagrams are counted and ignored; bad flags fail before load.

mod common;

use common::{alone, assert_no_panic, describe, read_json, shared, verdict_code, Shm};

fn run(shm: &Shm, dir: &std::path::Path, name: &str, args: &[&str]) -> serde_json::Value {
    let json = dir.join(format!("{name}.json"));
    let mut all = vec!["-e", "2", "-t", "2000", "-o", "1000", "--warmup-secs", "0"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json-output", json.to_str().unwrap()]);
    let out = shm.run(&all);
    assert_no_panic(&String::from_utf8_lossy(&out.stderr));
    let results = read_json(&json);
    assert_eq!(
        out.status.code(),
        Some(verdict_code(&results)),
        "{}",
        describe(&out)
    );
    shm.assert_empty();
    results
}

fn sum(results: &serde_json::Value, key: &str) -> u64 {
    ["trades", "book"]
        .iter()
        .map(|s| results["delivery"]["streams"][s][key].as_u64().unwrap())
        .sum()
}

/// Records the generators wrote, both streams.
fn written(results: &serde_json::Value) -> u64 {
    ["trades", "book"]
        .iter()
        .map(|s| results["delivery"]["written"][s].as_u64().unwrap())
        .sum()
}

/// Whether the verdict check named `name` passed (`None`: no such check).
fn passed(results: &serde_json::Value, name: &str) -> Option<bool> {
    results["verdict"]["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .and_then(|c| c["passed"].as_bool())
}

fn injected(results: &serde_json::Value, key: &str) -> u64 {
    results["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["counters"][key].as_u64().unwrap())
        .sum()
}

#[test]
fn udp_and_unix_feeds_deliver_every_record_with_the_bus_checks() {
    let _machine = shared();
    let shm = Shm::new("apfeed");
    let dir = tempfile::tempdir().unwrap();
    for transport in ["udp", "uds"] {
        let r = run(
            &shm,
            dir.path(),
            transport,
            &["--transport", transport, "-d", "2"],
        );
        assert_eq!(r["plan"]["transport"]["kind"], transport);
        let written = written(&r);
        assert_eq!(
            sum(&r, "received"),
            written,
            "{transport}: {}",
            r["delivery"]
        );
        for k in [
            "lost",
            "corrupted",
            "out_of_order",
            "gaps",
            "book_errors",
            "unaccounted",
        ] {
            assert_eq!(sum(&r, k), 0, "{transport} {k}: {}", r["delivery"]);
        }
        assert!(
            sum(&r, "digests_checked") > 0,
            "{transport}: books verified"
        );
        for k in ["duplicates", "reordered"] {
            assert_eq!(sum(&r, k), 0, "{transport} {k}: {}", r["delivery"]);
        }
        assert_eq!(r["delivery"]["per_reader"][0]["foreign_datagrams"], 0);
        for check in ["Records Lost", "Integrity Violations", "Readers Alive"] {
            assert_eq!(passed(&r, check), Some(true), "{transport} {check}");
        }
    }
}

#[test]
fn two_readers_of_a_unix_feed_each_get_every_record_once() {
    let _machine = shared();
    let shm = Shm::new("apuds2");
    let dir = tempfile::tempdir().unwrap();
    // A reader descheduled for a few sends fills its queue (10 datagrams by default) while
    // the other's does not: a datagram the full one refused goes again to it alone.
    let r = run(
        &shm,
        dir.path(),
        "uds2",
        &["--transport", "uds", "--consumers", "2", "-d", "2"],
    );
    let written = written(&r);
    assert_eq!(sum(&r, "received"), 2 * written, "{}", r["delivery"]);
    for k in ["duplicates", "lost", "unaccounted", "digest_mismatches"] {
        assert_eq!(sum(&r, k), 0, "{k}: {}", r["delivery"]);
    }
}

#[test]
fn the_readers_count_exactly_what_the_impairment_did() {
    let _machine = shared();
    let shm = Shm::new("apimpair");
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        &shm,
        dir.path(),
        "impaired",
        &[
            "--transport",
            "udp",
            "-d",
            "3",
            "--net-loss",
            "3",
            "--net-loss-burst",
            "3",
            "--net-duplicate",
            "2",
            "--net-reorder",
            "2",
            "--seed",
            "7",
        ],
    );
    let dropped = injected(&r, "net_dropped");
    assert!(dropped > 0);
    // Warm-up is 0 s: the measured sources hold every datagram of the run.
    assert_eq!(sum(&r, "lost"), dropped, "{}", r["delivery"]);
    assert_eq!(r["delivery"]["impairment_lost"], dropped);
    assert_eq!(sum(&r, "duplicates"), injected(&r, "net_duplicated"));
    assert_eq!(sum(&r, "reordered"), injected(&r, "net_reordered"));
    for k in [
        "corrupted",
        "out_of_order",
        "gaps",
        "book_errors",
        "unaccounted",
    ] {
        assert_eq!(sum(&r, k), 0, "{k}: {}", r["delivery"]);
    }
    let loss = r["verdict"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("Records Lost"))
        .unwrap();
    assert_eq!(loss["passed"], true, "{loss}");
    assert_eq!(passed(&r, "Integrity Violations"), Some(true));
    // Batched, delayed and jittered (so reordered by the jitter too), on the Unix socket: every
    // record the impairment dropped is lost to the reader, and nothing more.
    let b = run(
        &shm,
        dir.path(),
        "batched",
        &[
            "--transport",
            "uds",
            "-d",
            "2",
            "--batch",
            "4",
            "--net-loss",
            "2",
            "--net-delay",
            "200us",
            "--net-jitter",
            "50us",
            "--net-duplicate",
            "1",
            "--seed",
            "9",
            // A datagram the jitter put behind a later one is sent by the generator thread at
            // its time; on a loaded machine that thread can be off its core for milliseconds,
            // longer than the default gap wait (the jitter's span), and the reader then rightly
            // gives the datagram up as lost. The wait is made longer than any such stall, so
            // that what is counted is the impairment's doing alone.
            "--gap-wait",
            "100ms",
        ],
    );
    assert_eq!(
        sum(&b, "lost"),
        injected(&b, "net_dropped") + injected(&b, "net_refused"),
        "{}",
        b["delivery"]
    );
    assert_eq!(sum(&b, "duplicates"), injected(&b, "net_duplicated"));
    for k in [
        "corrupted",
        "out_of_order",
        "gaps",
        "book_errors",
        "unaccounted",
    ] {
        assert_eq!(sum(&b, k), 0, "batched {k}: {}", b["delivery"]);
    }
    // The same seed drops the same datagrams.
    let again = run(
        &shm,
        dir.path(),
        "again",
        &[
            "--transport",
            "udp",
            "-d",
            "3",
            "--net-loss",
            "3",
            "--net-loss-burst",
            "3",
            "--net-duplicate",
            "2",
            "--net-reorder",
            "2",
            "--seed",
            "7",
        ],
    );
    // A run whose last records were still due when it ended sends fewer: each datagram it did
    // not send is at most one drop fewer, and the same sends drop the same datagrams.
    let (sent, sent_again) = (injected(&r, "sent"), injected(&again, "sent"));
    let dropped_again = injected(&again, "net_dropped");
    if sent == sent_again {
        assert_eq!(dropped_again, dropped);
    } else {
        assert!(
            dropped.abs_diff(dropped_again) <= sent.abs_diff(sent_again),
            "sent {sent} and {sent_again}, dropped {dropped} and {dropped_again}"
        );
    }
}

#[test]
fn a_delay_moves_the_end_to_end_median_by_itself() {
    let _machine = alone();
    let shm = Shm::new("apdelay");
    let dir = tempfile::tempdir().unwrap();
    let p50 = |r: &serde_json::Value| r["delivery"]["e2e"]["all"]["p50"].as_f64().unwrap();
    // A pair of runs measured while something else on a shared machine took a core for a
    // millisecond says nothing about the delay; a pair is measured again, up to three times, and
    // every pair is reported when none comes within 10%.
    let mut pairs = Vec::new();
    for attempt in 0..3 {
        let plain = run(
            &shm,
            dir.path(),
            &format!("plain{attempt}"),
            &["--transport", "udp", "-d", "2"],
        );
        let delayed = run(
            &shm,
            dir.path(),
            &format!("delayed{attempt}"),
            &["--transport", "udp", "-d", "2", "--net-delay", "2ms"],
        );
        let expected = 2e6 + p50(&plain);
        let got = p50(&delayed);
        pairs.push(format!(
            "plain p50 {} ns, delayed p50 {got} ns",
            p50(&plain)
        ));
        if (got - expected).abs() < 0.1 * expected {
            return;
        }
    }
    panic!(
        "a 2 ms delay did not move the e2e p50 by 2 ms (within 10%): {}",
        pairs.join("; ")
    );
}

#[test]
fn foreign_datagrams_are_counted_and_ignored() {
    let _machine = shared();
    let shm = Shm::new("apforeign");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("f.json");
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let group = format!("239.77.0.1:{port}");
    let mut cmd = shm.cmd();
    let child = cmd
        .args(["--shm-dir"])
        .arg(&shm.base)
        .args([
            "-e",
            "1",
            "-t",
            "1000",
            "-o",
            "500",
            "--warmup-secs",
            "0",
            "-d",
            "5",
            "--transport",
            "udp",
            "--multicast",
            &group,
            "--json-output",
        ])
        .arg(&json)
        .timeout(common::CHILD_TIMEOUT);
    let base = shm.base.clone();
    let sender = std::thread::spawn(move || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&s)
            .set_multicast_if_v4(&std::net::Ipv4Addr::LOCALHOST)
            .unwrap();
        s.set_multicast_loop_v4(true).unwrap();
        // The run's own trades session, from its feed.json, once its reader has joined the
        // group (the kernel lists the membership on lo as 01004DEF): what arrives from then on
        // is the reader's to count, however late the load starts.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let feed = loop {
            let feed = std::fs::read_dir(&base)
                .into_iter()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("feed.json")).ok())
                .next();
            let joined = std::fs::read_to_string("/proc/net/igmp")
                .is_ok_and(|igmp| igmp.contains("01004DEF"));
            match feed {
                Some(feed) if joined => break feed,
                _ if std::time::Instant::now() > deadline => {
                    panic!("no feed.json with a reader in 239.77.0.1 within 30 s")
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        let feed: serde_json::Value = serde_json::from_str(&feed).unwrap();
        let ours = feed["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["stream"] == "trades")
            .unwrap()["session"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec();
        let datagram = |session: &[u8], count: u16, body: &[u8]| {
            let mut d = vec![0u8; 20];
            d[..10].copy_from_slice(session);
            d[10..18].copy_from_slice(&1u64.to_be_bytes());
            d[18..20].copy_from_slice(&count.to_be_bytes());
            d.extend_from_slice(body);
            d
        };
        // Garbage; a heartbeat and a data datagram of another session; and datagrams in this
        // run's session that lie about what they hold (a message cut short, a count of more
        // messages than follow).
        let mut record = 64u16.to_be_bytes().to_vec();
        record.extend_from_slice(&[0x5a; 64]);
        let cases: Vec<Vec<u8>> = vec![
            vec![0xde, 0xad, 0xbe],
            datagram(b"FOREIGN01T", 0, &[]),
            datagram(b"FOREIGN01T", 1, &record),
            datagram(&ours, 1, &record[..10]),
            datagram(&ours, 3, &record),
        ];
        let mut sent = 0u64;
        for i in 0..50usize {
            s.send_to(&cases[i % cases.len()], format!("239.77.0.1:{port}"))
                .unwrap();
            sent += 1;
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        sent
    });
    let out = child.output().unwrap();
    let sent = sender.join().unwrap();
    assert_no_panic(&String::from_utf8_lossy(&out.stderr));
    let r = read_json(&json);
    assert_eq!(
        out.status.code(),
        Some(verdict_code(&r)),
        "{}",
        describe(&out)
    );
    assert_eq!(r["delivery"]["per_reader"][0]["foreign_datagrams"], sent);
    for k in [
        "lost",
        "corrupted",
        "out_of_order",
        "gaps",
        "book_errors",
        "unaccounted",
    ] {
        assert_eq!(sum(&r, k), 0, "{k}: {}", r["delivery"]);
    }
    shm.assert_empty();
}

#[test]
fn bad_transport_flags_fail_before_load() {
    let _machine = shared();
    let shm = Shm::new("apbadnet");
    for args in [
        &["--transport", "carrier-pigeon"][..],
        &["--transport", "udp", "--net-loss", "101"],
        &["--transport", "udp", "--net-delay", "-1us"],
        &["--transport", "udp", "--net-delay", "5parsecs"],
        &["--transport", "udp", "--net-jitter", "1ms"],
        &[
            "--transport",
            "udp",
            "--net-delay",
            "1ms",
            "--net-jitter",
            "2ms",
        ],
        &["--net-loss", "1"],
        &["--transport", "udp", "--multicast", "10.0.0.1:5000"],
        &["--transport", "uds", "--multicast", "239.1.1.1:5000"],
        &["--transport", "udp", "--record", "/tmp/never.apcap"],
        &["--mode", "coordinator", "--transport", "shm,udp"],
        &["--transport", "shm", "--gap-wait", "1ms"],
    ] {
        let out = shm.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_no_panic(&stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(!stderr.contains("Starting"), "{args:?}: {stderr}");
        shm.assert_empty();
    }
    // A multicast port another program holds (bound without sharing it) is refused up front,
    // in one line that says what to do.
    let holder = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let group = format!("239.1.1.1:{port}");
    let out = shm.run(&["--transport", "udp", "--multicast", &group, "-d", "30"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(!stderr.contains("Starting"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&group) && errors[0].contains("choose another"),
        "{stderr}"
    );
    shm.assert_empty();
}

#[test]
fn a_list_of_transports_runs_the_same_load_on_each_and_compares_them() {
    let _machine = shared();
    let shm = Shm::new("apcompare");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let html = dir.path().join("c.html");
    let out = shm.run(&[
        "-e",
        "1",
        "-t",
        "2000",
        "-o",
        "1000",
        "-d",
        "1",
        "--warmup-secs",
        "0",
        "--transport",
        "shm,udp,uds",
        "--json-output",
        json.to_str().unwrap(),
        "--html-report",
        html.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&html).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_no_panic(&String::from_utf8_lossy(&out.stderr));
    let c = read_json(&json);
    assert_eq!(c["kind"], "alphapulse-transport-comparison");
    let (rows, runs) = (c["rows"].as_array().unwrap(), c["runs"].as_array().unwrap());
    assert_eq!(rows.len(), 3);
    let worst = runs.iter().map(verdict_code).max().unwrap();
    assert_eq!(out.status.code(), Some(worst), "{}", describe(&out));
    for ((row, run), name) in rows.iter().zip(runs).zip(["shm", "udp", "uds"]) {
        assert_eq!(row["transport"], name);
        assert_eq!(run["plan"]["transport"]["kind"], name);
        // The same load on each.
        assert_eq!(run["plan"]["exchanges"], runs[0]["plan"]["exchanges"]);
        assert_eq!(row["lost"], sum(run, "lost"));
        assert_eq!(row["e2e_ns"][0], run["delivery"]["e2e"]["all"]["p50"]);
        assert_eq!(row["write_ns"][1], run["latency"]["service"]["all"]["p99"]);
        assert!(stdout.lines().any(|l| l.starts_with(name)), "{stdout}");
        assert!(page.contains(&format!("<tr><th>{name}</th>")), "{page}");
    }
    assert!(stdout.contains("TRANSPORT COMPARISON"), "{stdout}");
    shm.assert_empty();
    for args in [
        &["--transport", "shm,shm"][..],
        &["--transport", "shm,udp", "--junit", "/tmp/never.xml"],
    ] {
        let out = shm.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert_no_panic(&String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn the_max_rate_search_reports_the_highest_sustained_probe_of_each_transport() {
    // Its probes keep both cores busy: nothing else of this file runs beside it.
    let _machine = alone();
    let shm = Shm::new("apmaxrate");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let html = dir.path().join("c.html");
    // About a dozen runs of a second and their start-up: more than one run's time limit.
    let out = shm
        .cmd()
        .timeout(std::time::Duration::from_secs(180))
        .arg("--shm-dir")
        .arg(&shm.base)
        .args([
            "-e",
            "1",
            "-t",
            "20000",
            "-o",
            "0",
            "-d",
            "1",
            "--warmup-secs",
            "0",
            "--transport",
            "shm,uds",
            "--max-rate-secs",
            "1",
            "--json-output",
            json.to_str().unwrap(),
            "--html-report",
            html.to_str().unwrap(),
        ])
        .output()
        .expect("running load-tester");
    assert_no_panic(&String::from_utf8_lossy(&out.stderr));
    let c = read_json(&json);
    let page = std::fs::read_to_string(&html).unwrap();
    for row in c["rows"].as_array().unwrap() {
        let m = &row["max_rate"];
        assert_eq!(m["probe_secs"], 1, "{row}");
        let probes = m["probes"].as_array().unwrap();
        assert!(!probes.is_empty(), "{row}");
        // The first probe is the comparison's own load.
        assert_eq!(probes[0]["offered"].as_f64(), Some(20_000.0), "{row}");
        // The rate is what the highest sustained probe wrote, and every probe that was not
        // sustained says why.
        let best = probes
            .iter()
            .filter(|p| p["failed"].is_null())
            .max_by(|a, b| {
                let (x, y) = (a["offered"].as_f64(), b["offered"].as_f64());
                x.partial_cmp(&y).unwrap()
            });
        match best {
            Some(b) => assert_eq!(m["rate"], b["achieved"], "{row}"),
            None => assert!(m["rate"].is_null(), "{row}"),
        }
        for p in probes.iter().filter(|p| !p["failed"].is_null()) {
            assert!(!p["failed"].as_str().unwrap().is_empty(), "{row}");
        }
        let name = row["transport"].as_str().unwrap();
        assert!(
            page.contains(&format!("<b>{name}</b> max rate search")),
            "{page}"
        );
    }
    // (What rate a debug build sustains here depends on what else runs: no figure is asserted.)
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("max rate/s"), "{stdout}");
    shm.assert_empty();
    // A search needs a comparison of a constant load.
    for args in [
        &["--transport", "shm", "--max-rate-secs", "1"][..],
        &[
            "--transport",
            "shm,udp",
            "--max-rate-secs",
            "1",
            "--scenario",
            "burst",
        ],
    ] {
        let out = shm.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--max-rate-secs"),
            "{args:?}: {}",
            describe(&out)
        );
    }
}

/// A network namespace of this test's own, removed on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn sh(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut c = std::process::Command::new(args[0]);
    c.args(&args[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", describe(&out));
    out
}

#[test]
fn readers_count_exactly_what_the_kernel_dropped() {
    let _machine = shared();
    let tools = ["ip", "nft"].iter().all(|t| {
        std::process::Command::new(t)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    if !common::have_tool(
        "readers_count_exactly_what_the_kernel_dropped",
        tools && root,
        "needs root, ip (iproute2) and nft (nftables) to drop datagrams in a network namespace",
    ) {
        return;
    }
    let ns = Netns(format!("apnft{}", std::process::id()));
    sh(&["ip", "netns", "add", &ns.0], None);
    sh(
        &[
            "ip", "netns", "exec", &ns.0, "ip", "link", "set", "lo", "up",
        ],
        None,
    );
    // Drop 2% of the feed's data datagrams (longer than a 20-byte heartbeat) on the way out.
    let port = 46_000 + (std::process::id() % 1000) as u16;
    let rules = format!(
        "table inet apdrop {{\n counter dropped {{ }}\n chain out {{\n  type filter hook output priority 0;\n  ip daddr 239.77.1.1 udp dport {port} udp length > 28 numgen random mod 100 < 2 counter name dropped drop\n }}\n}}\n"
    );
    sh(
        &["ip", "netns", "exec", &ns.0, "nft", "-f", "-"],
        Some(&rules),
    );
    let shm = Shm::new("apnft");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("k.json");
    let group = format!("239.77.1.1:{port}");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, common::BIN])
        .env("ALPHAPULSE_SHM_DIR", &shm.base)
        .env("NO_COLOR", "1")
        .args([
            "-e",
            "1",
            "-t",
            "2000",
            "-o",
            "0",
            "-d",
            "2",
            "--warmup-secs",
            "0",
            "--transport",
            "udp",
            "--multicast",
            &group,
            "--allow-loss",
            "--json-output",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert_no_panic(&String::from_utf8_lossy(&out.stderr));
    let r = read_json(&json);
    assert_eq!(
        out.status.code(),
        Some(verdict_code(&r)),
        "{}",
        describe(&out)
    );
    let listed = sh(
        &[
            "ip", "netns", "exec", &ns.0, "nft", "list", "counter", "inet", "apdrop", "dropped",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    let dropped: u64 = text
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {text}"));
    assert!(dropped > 0, "{text}");
    // One record per datagram: every packet the kernel dropped is one record lost, which the
    // sender saw refused (EPERM) and counted, and nothing else is missing.
    assert_eq!(sum(&r, "lost"), dropped, "{}", r["delivery"]);
    assert_eq!(injected(&r, "net_refused"), dropped);
    assert_eq!(injected(&r, "net_dropped"), 0);
    assert_eq!(injected(&r, "write_failures"), 0);
    for k in [
        "unaccounted",
        "corrupted",
        "out_of_order",
        "gaps",
        "book_errors",
        "duplicates",
    ] {
        assert_eq!(sum(&r, k), 0, "{k}: {}", r["delivery"]);
    }
    shm.assert_empty();
}

#[cfg(feature = "iceoryx2")]
#[test]
fn iceoryx2_delivers_every_record_with_the_bus_checks() {
    let _machine = shared();
    let shm = Shm::new("apicx");
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        &shm,
        dir.path(),
        "icx",
        &["--transport", "iceoryx2", "-d", "2"],
    );
    assert_eq!(r["plan"]["transport"]["kind"], "iceoryx2");
    let written = written(&r);
    assert_eq!(sum(&r, "received"), written, "{}", r["delivery"]);
    for k in [
        "lost",
        "corrupted",
        "out_of_order",
        "gaps",
        "book_errors",
        "unaccounted",
    ] {
        assert_eq!(sum(&r, k), 0, "{k}: {}", r["delivery"]);
    }
    assert!(sum(&r, "digests_checked") > 0);
}

#[cfg(not(feature = "iceoryx2"))]
#[test]
fn iceoryx2_in_a_build_without_it_says_how_to_get_it() {
    let _machine = shared();
    let shm = Shm::new("apnoicx");
    let out = shm.run(&["--transport", "iceoryx2", "-d", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr.contains("--features iceoryx2"), "{stderr}");
    shm.assert_empty();
}

#[test]
fn netem_is_applied_where_the_kernel_has_it_and_skipped_with_one_line_where_not() {
    let _machine = shared();
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "tc"].iter().all(|t| {
        std::process::Command::new(t)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !common::have_tool(
        "netem_is_applied_where_the_kernel_has_it_and_skipped_with_one_line_where_not",
        root && tools,
        "needs root, ip and tc, to try netem on the loopback of a network namespace",
    ) {
        return;
    }
    // A namespace of its own: a netem on the host's loopback would slow every other test.
    let ns = Netns(format!("apnetem{}", std::process::id()));
    sh(&["ip", "netns", "add", &ns.0], None);
    sh(
        &[
            "ip", "netns", "exec", &ns.0, "ip", "link", "set", "lo", "up",
        ],
        None,
    );
    let qdisc = || {
        String::from_utf8_lossy(
            &sh(
                &[
                    "ip", "netns", "exec", &ns.0, "tc", "qdisc", "show", "dev", "lo",
                ],
                None,
            )
            .stdout,
        )
        .into_owned()
    };
    let before = qdisc();
    let shm = Shm::new("apnetem");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("n.json");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, common::BIN])
        .env("ALPHAPULSE_SHM_DIR", &shm.base)
        .env("NO_COLOR", "1")
        .args([
            "-e",
            "1",
            "-t",
            "1000",
            "-o",
            "0",
            "-d",
            "1",
            "--warmup-secs",
            "0",
            "--transport",
            "udp",
            "--netem",
            "delay 1ms",
            "--json-output",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_no_panic(&stderr);
    let r = read_json(&json);
    assert_eq!(
        out.status.code(),
        Some(verdict_code(&r)),
        "{}",
        describe(&out)
    );
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains("netem")).collect();
    assert!(!said.is_empty(), "{stderr}");
    let warning = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w.as_str().unwrap().contains("netem"))
        .unwrap_or_else(|| panic!("no netem line in {}", r["warnings"]))
        .as_str()
        .unwrap()
        .to_string();
    if warning.starts_with("kernel netem on lo") {
        // Applied: the delay shows end to end.
        let p50 = r["delivery"]["e2e"]["all"]["p50"].as_f64().unwrap();
        assert!(p50 > 900_000.0, "e2e p50 {p50} ns with a 1 ms netem delay");
    } else {
        assert!(warning.contains("skipped"), "{warning}");
    }
    // Whatever happened, loopback is as it was.
    assert_eq!(qdisc(), before);
    shm.assert_empty();
    for bad in ["delay 1ms; reboot", ""] {
        let out = shm.run(&["--transport", "udp", "--netem", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", describe(&out));
    }
    let out = shm.run(&["--transport", "uds", "--netem", "delay 1ms"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

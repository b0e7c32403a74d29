//! The HTML report in a real browser: reports of real runs (without and with a baseline) are
//! loaded by headless Chromium, which must run the page's script to the end, draw every chart
//! and log nothing to the console. A deliberately broken page proves that the checks would see
//! a failure.
//!
//! Without Chromium (Debian package `chromium`; `.ci/run` installs it) the tests print SKIPPED
//! on the terminal and pass; with `CI=true` (as `.ci/run` sets it) they fail instead.

mod common;

use common::{run_bounded, BIN};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Chromium, or `None` after printing why the test is skipped (in CI, where `.ci/run` installs
/// it, a missing Chromium fails the test instead).
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = chromium();
    common::have_tool(
        test,
        found.is_some(),
        "chromium not found on PATH (apt-get install chromium); the HTML report was NOT checked in a browser",
    )
    .then(|| found.expect("found"))
}

/// A short real run writing its HTML report (and JSON results) into `dir`.
fn real_run(dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
    let shm = tempfile::Builder::new()
        .prefix("lt-html-test-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let html = dir.join(format!("report{}.html", extra.len()));
    let json = dir.join(format!("results{}.json", extra.len()));
    let mut cmd = Command::new(BIN);
    cmd.args([
        "-d",
        "2",
        "--warmup-secs",
        "0",
        "-e",
        "1",
        "-t",
        "1000",
        "-o",
        "500",
    ])
    .arg("--shm-dir")
    .arg(shm.path())
    .arg("--html-report")
    .arg(&html)
    .arg("--json-output")
    .arg(&json)
    .args(extra)
    .env("NO_COLOR", "1");
    let common::Out {
        code,
        stdout,
        stderr,
        ..
    } = run_bounded(cmd, Duration::from_secs(90));
    assert!(
        matches!(code, Some(0 | 1 | 3)),
        "exit {code:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(html.is_file(), "no report written; stderr:\n{stderr}");
    (html, json)
}

struct Rendered {
    dom: String,
    console: Vec<String>,
}

/// Loads `page` in headless Chromium and returns the DOM after its scripts ran, and every
/// console message.
fn render(chromium: &Path, page: &Path) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg("--dump-dom")
    .arg(format!("file://{}", page.display()));
    let common::Out {
        code,
        stdout: dom,
        stderr,
        ..
    } = run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(code, Some(0), "chromium failed:\n{stderr}");
    // Chromium logs every console message (log, warn, error, uncaught exceptions) as
    // `...:CONSOLE:<line>] "message", source: ...`.
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    Rendered { dom, console }
}

fn attr<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = dom.find(&key)? + key.len();
    Some(&dom[start..start + dom[start..].find('"')?])
}

/// Charts of a report: per latency kind one by percentile and one over time, then rate, CPU,
/// RSS and errors. The kinds are service, response, lag, and end-to-end with readers.
fn expected_charts(results: &serde_json::Value) -> usize {
    let kinds = 3 + usize::from(!results["delivery"].is_null());
    2 * kinds + 4
}

fn assert_rendered(r: &Rendered, what: &str, expected: usize) {
    assert!(
        r.console.is_empty(),
        "{what}: console messages:\n{}",
        r.console.join("\n")
    );
    assert_eq!(
        attr(&r.dom, "data-rendered"),
        Some("ok"),
        "{what}: the script did not finish drawing"
    );
    assert!(
        r.dom
            .contains("<div id=\"report-errors\" hidden=\"\"></div>"),
        "{what}: the error box is not empty and hidden"
    );
    let charts: usize = attr(&r.dom, "data-charts").unwrap().parse().unwrap();
    assert_eq!(charts, expected, "{what}: charts drawn");
    assert_eq!(r.dom.matches("<svg ").count(), charts);
    // Every chart has at least one line or says that nothing was recorded.
    let with_lines = r.dom.matches("data-lines=\"").count();
    let empty = r.dom.matches("class=\"empty\"").count();
    assert_eq!(with_lines + empty, charts, "{what}");
    assert!(
        r.dom.matches("<path d=\"M").count() >= charts,
        "{what}: too few lines"
    );
}

#[test]
fn report_of_a_real_run_renders_in_chromium_without_console_errors() {
    let Some(chromium) = chromium_or_skip("report_of_a_real_run_renders_in_chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // Negative control: the checks below do notice a broken page.
    let broken = dir.path().join("broken.html");
    std::fs::write(
        &broken,
        "<!DOCTYPE html><html><body data-rendered=\"pending\"><script>console.error('x'); nothing();</script></body></html>",
    )
    .unwrap();
    let r = render(&chromium, &broken);
    assert!(
        r.console
            .iter()
            .any(|l| l.contains("nothing is not defined")),
        "an uncaught exception must show in the console log: {:?}",
        r.console
    );
    assert_eq!(attr(&r.dom, "data-rendered"), Some("pending"));

    let (html, json) = real_run(dir.path(), &[]);
    let text = std::fs::read_to_string(&html).unwrap();
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = render(&chromium, &html);
    assert_rendered(&r, "report", expected_charts(&results));
    // The page shows this run's figures.
    let outcome = results["verdict"]["outcome"]
        .as_str()
        .unwrap()
        .to_uppercase();
    assert!(r.dom.contains(&format!("id=\"outcome\">{outcome}<")));
    let sent = results["throughput"]["total"]["sent"].as_u64().unwrap();
    assert!(text.contains(&alphapulse_load_tester::output::thousands(sent)));
    assert!(!r.dom.contains("id=\"comparison\""));

    // With a baseline: the comparison renders as well.
    let baseline = json.to_str().unwrap().to_string();
    let (html, json) = real_run(
        dir.path(),
        &["--baseline", &baseline, "--threshold", "latency.*.*.*=off"],
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = render(&chromium, &html);
    assert_rendered(&r, "report with a baseline", expected_charts(&results));
    assert!(r.dom.contains("id=\"comparison\""));
    assert!(r.dom.contains("id=\"comparison-table\""));
    assert!(r.dom.contains(&baseline));
}

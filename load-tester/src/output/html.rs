//! The HTML report (`--html-report FILE`): one self-contained file that works offline. A content
//! security policy forbids every fetch, so nothing can load from a network even by mistake.
//!
//! The tables (configuration, verdict, throughput, latency, resources, errors, the comparison
//! with a baseline) are plain HTML written here, so every figure reads without JavaScript. The
//! charts are inline SVG that a small script of this file draws from the results embedded as
//! JSON: latency by percentile per kind and stream (HdrHistogram style, logarithmic percentile
//! axis) from the stored histograms, achieved against target rate over time, latency over
//! time, CPU and memory over time, and errors over time. When the script has drawn every chart
//! it sets `data-rendered="ok"` on `<body>`; an error anywhere is shown in the page (and sets
//! `data-rendered="error"`), never swallowed.

use std::fmt::Write as _;

use serde_json::json;

use super::format::{escape, iso8601_utc};
use super::format::{format_change, format_threshold, format_value};
use super::{human_ns, thousands};
use crate::report::Integrity;
use crate::results::compare::{Comparison, Status};
use crate::results::file::{kind_label, kind_reports};
use crate::results::verdict::Outcome;
use crate::results::{LatencySummary, Results, StreamThroughput};

/// Percentile ticks per half distance of the percentile charts (HdrHistogram's default).
pub const SPECTRUM_TICKS_PER_HALF: u32 = 5;

const STYLE: &str = r##"
:root { --fg:#1d2330; --muted:#5b6474; --line:#d9dee7; --bg:#ffffff; --panel:#f6f8fb;
  --pass:#17803d; --fail:#c62828; --warn:#a86400; }
* { box-sizing:border-box; }
body { font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg);
  background:var(--bg); margin:0 auto; max-width:1180px; padding:24px; }
h1 { font-size:24px; margin:0 0 4px; } h2 { font-size:18px; margin:32px 0 10px;
  border-bottom:1px solid var(--line); padding-bottom:4px; } h3 { font-size:15px; margin:18px 0 6px; }
.sub { color:var(--muted); }
.badge { display:inline-block; padding:3px 12px; border-radius:4px; font-weight:700; color:#fff;
  letter-spacing:.05em; vertical-align:middle; margin-left:10px; font-size:15px; }
.badge.passed { background:var(--pass); } .badge.failed { background:var(--fail); }
.badge.invalid { background:var(--warn); }
table { border-collapse:collapse; margin:6px 0 12px; }
th, td { padding:4px 10px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
thead th { background:var(--panel); font-weight:600; }
td.pass, span.pass { color:var(--pass); font-weight:600; } td.fail, span.fail { color:var(--fail); font-weight:700; }
td.improved { color:var(--pass); } td.regressed { color:var(--fail); font-weight:700; }
tr.regressed td { background:#fdecea; } tr.improved td { background:#eaf6ee; }
td.muted { color:var(--muted); }
.note { background:#fff8e5; border-left:4px solid var(--warn); padding:8px 12px; margin:8px 0; }
#report-errors { background:#fdecea; border-left:4px solid var(--fail); padding:8px 12px;
  white-space:pre-wrap; font-family:monospace; }
.charts { display:grid; grid-template-columns:repeat(auto-fill,minmax(540px,1fr)); gap:16px; }
.chart { background:var(--panel); border:1px solid var(--line); border-radius:6px; padding:8px; }
.chart h3 { margin:2px 4px 4px; font-size:14px; }
.chart svg { width:100%; height:auto; display:block; }
.chart .axis text { font-size:11px; fill:var(--muted); }
.chart .grid line { stroke:var(--line); }
.chart .legend text { font-size:11px; fill:var(--fg); }
.chart button { float:right; font-size:11px; }
"##;

const SCRIPT: &str = r##"
(function () {
  "use strict";
  var body = document.body;
  function fail(msg) {
    var box = document.getElementById("report-errors");
    box.hidden = false;
    box.textContent += "Chart error: " + msg + "\n";
    body.dataset.rendered = "error";
  }
  window.addEventListener("error", function (e) { fail(e.message || String(e)); });
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = { trades: "#1f6fd1", book: "#e8710a", all: "#3a8f3a" };
  var DASH = { p50: "", p99: "6 3", max: "2 3" };
  function el(name, attrs, parent) {
    var e = document.createElementNS(SVG, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function fmtNs(v) {
    if (v >= 1e9) { return +(v / 1e9).toPrecision(3) + " s"; }
    if (v >= 1e6) { return +(v / 1e6).toPrecision(3) + " ms"; }
    if (v >= 1e3) { return +(v / 1e3).toPrecision(3) + " \u00b5s"; }
    return +v.toPrecision(3) + " ns";
  }
  function fmtNum(v) {
    if (Math.abs(v) >= 1e6) { return +(v / 1e6).toPrecision(3) + "M"; }
    if (Math.abs(v) >= 1e3) { return +(v / 1e3).toPrecision(3) + "k"; }
    return +v.toPrecision(3) + "";
  }
  function fmtPct(x) {
    // x = 1/(1-q): 1 -> 0%, 10 -> 90%, 100 -> 99%, ...
    var q = 100 * (1 - 1 / x);
    return (+q.toFixed(6)) + "%";
  }
  function logTicks(lo, hi) {
    var t = [];
    for (var e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) { t.push(Math.pow(10, e)); }
    return t;
  }
  function linTicks(lo, hi) {
    var span = hi - lo || 1, step = Math.pow(10, Math.floor(Math.log10(span / 5)));
    if (span / step > 10) { step *= 2; } if (span / step > 10) { step *= 2.5; }
    var t = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) { t.push(+v.toPrecision(12)); }
    return t;
  }
  // opts: {lines:[{name,color,dash,points:[[x,y]]}], xlog, ylog, xfmt, yfmt, xlabel, ylabel, shade:[x0,x1], ymin0,
  //        marks:[{id,at,end,label}] (faults of a chaos run: a band from at to end, a line at at)}
  function chart(container, title, opts) {
    var box = document.createElement("div");
    box.className = "chart";
    var h = document.createElement("h3");
    h.textContent = title;
    box.appendChild(h);
    container.appendChild(box);
    var W = 560, H = 310, L = 64, R = 26, T = 10, B = 74;
    function draw() {
      var old = box.querySelector("svg");
      if (old) { box.removeChild(old); }
      var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title }, box);
      var xs = [], ys = [];
      opts.lines.forEach(function (l) {
        l.points = l.points.filter(function (p) {
          return p[0] !== null && p[1] !== null && isFinite(p[0]) && isFinite(p[1]) &&
            (!opts.xlog || p[0] > 0);
        });
        l.points.forEach(function (p) { xs.push(p[0]); if (!opts.ylog || p[1] > 0) { ys.push(p[1]); } });
      });
      if (!xs.length || !ys.length) {
        el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "class": "empty" }, svg).textContent = "nothing recorded";
        return;
      }
      var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
      var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
      if (opts.xmin !== undefined) { x0 = Math.min(x0, opts.xmin); }
      if (opts.xmax !== undefined) { x1 = Math.max(x1, opts.xmax); }
      if (opts.ylog) { y0 = Math.pow(10, Math.floor(Math.log10(y0))); y1 = Math.pow(10, Math.ceil(Math.log10(y1))); }
      else { if (opts.ymin0 !== false) { y0 = Math.min(0, y0); } y1 = y1 > y0 ? y1 * 1.05 : y0 + 1; }
      if (opts.xlog) { x0 = Math.pow(10, Math.floor(Math.log10(x0))); x1 = Math.pow(10, Math.ceil(Math.log10(x1))); }
      if (x1 <= x0) { x1 = x0 + 1; }
      var fx = opts.xlog ? function (v) { return Math.log10(v); } : function (v) { return v; };
      var fy = opts.ylog ? function (v) { return Math.log10(v); } : function (v) { return v; };
      function px(v) { return L + (fx(v) - fx(x0)) / (fx(x1) - fx(x0)) * (W - L - R); }
      function py(v) { return T + (1 - (fy(v) - fy(y0)) / (fy(y1) - fy(y0))) * (H - T - B); }
      if (opts.shade) {
        var s0 = Math.max(opts.shade[0], x0), s1 = Math.min(opts.shade[1], x1);
        if (s1 > s0) {
          el("rect", { x: px(s0), y: T, width: px(s1) - px(s0), height: H - T - B, fill: "#eceff4" }, svg);
          el("text", { x: px(s0) + 4, y: T + 12, "class": "shade" , "font-size": 10, fill: "#5b6474" }, svg).textContent = "warm-up";
        }
      }
      (opts.marks || []).forEach(function (m) {
        if (m.at < x0 || m.at > x1) { return; }
        var g = el("g", { "class": "fault-mark" }, svg), e = Math.min(Math.max(m.end, m.at), x1);
        if (px(e) - px(m.at) >= 1) {
          el("rect", { x: px(m.at), y: T, width: px(e) - px(m.at), height: H - T - B, fill: "#fbe3e0" }, g);
        }
        el("line", { x1: px(m.at), x2: px(m.at), y1: T, y2: H - B, stroke: "#c0392b", "stroke-dasharray": "3 2" }, g);
        el("text", { x: px(m.at) + 2, y: T + 24, "font-size": 10, fill: "#c0392b" }, g).textContent = "#" + m.id;
        el("title", {}, g).textContent = "fault #" + m.id + ": " + m.label;
      });
      var grid = el("g", { "class": "grid" }, svg), axis = el("g", { "class": "axis" }, svg);
      (opts.ylog ? logTicks(y0, y1) : linTicks(y0, y1)).forEach(function (v) {
        if (v < y0 || v > y1) { return; }
        el("line", { x1: L, x2: W - R, y1: py(v), y2: py(v) }, grid);
        el("text", { x: L - 6, y: py(v) + 4, "text-anchor": "end" }, axis).textContent = opts.yfmt(v);
      });
      (opts.xticks || (opts.xlog ? logTicks(x0, x1) : linTicks(x0, x1))).forEach(function (v) {
        if (v < x0 || v > x1) { return; }
        el("line", { x1: px(v), x2: px(v), y1: T, y2: H - B }, grid);
        el("text", { x: px(v), y: H - B + 14, "text-anchor": "middle" }, axis).textContent = opts.xfmt(v);
      });
      el("text", { x: (L + W - R) / 2, y: H - B + 30, "text-anchor": "middle" }, axis).textContent = opts.xlabel;
      el("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle", transform: "rotate(-90 12 " + (T + H - B) / 2 + ")" }, axis).textContent = opts.ylabel;
      var drawn = 0;
      opts.lines.forEach(function (l) {
        var pts = l.points.filter(function (p) { return !opts.ylog || p[1] > 0; });
        if (!pts.length) { return; }
        var d = pts.map(function (p, i) { return (i ? "L" : "M") + px(p[0]).toFixed(1) + " " + py(p[1]).toFixed(1); }).join(" ");
        var path = el("path", { d: d, fill: "none", stroke: l.color, "stroke-width": l.width || 1.8, "stroke-dasharray": l.dash || "" }, svg);
        el("title", {}, path).textContent = l.name;
        if (pts.length === 1) { el("circle", { cx: px(pts[0][0]), cy: py(pts[0][1]), r: 3, fill: l.color }, svg); }
        drawn++;
      });
      var legend = el("g", { "class": "legend" }, svg), lx = L, ly = H - B + 48;
      opts.lines.forEach(function (l) {
        var w = 30 + 6.2 * l.name.length;
        if (lx > L && lx + w > W - R) { lx = L; ly += 14; }
        el("line", { x1: lx, x2: lx + 18, y1: ly - 4, y2: ly - 4, stroke: l.color, "stroke-width": 2, "stroke-dasharray": l.dash || "" }, legend);
        var t = el("text", { x: lx + 22, y: ly }, legend);
        t.textContent = l.name;
        lx += w;
      });
      svg.dataset.lines = String(drawn);
    }
    if (opts.toggle) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = "log / linear y";
      b.addEventListener("click", function () { opts.ylog = !opts.ylog; draw(); });
      h.appendChild(b);
    }
    draw();
    return box;
  }

  try {
    var data = JSON.parse(document.getElementById("report-data").textContent);
    var series = data.series, warm = [0, data.warmup_secs], marks = data.faults || [];
    var streams = ["trades", "book"];
    function at(p) { return p.start_secs + p.secs; }

    var spectra = document.getElementById("spectrum-charts");
    data.kinds.forEach(function (k) {
      var sp = data.spectra[k.name], lines = [];
      ["all", "trades", "book"].forEach(function (s) {
        if (sp[s] && sp[s].points.length) {
          lines.push({ name: s + " (max " + fmtNs(sp[s].max) + ")", color: COLORS[s], width: s === "all" ? 1.2 : 1.8,
                       dash: s === "all" ? "4 3" : "", points: sp[s].points });
        }
      });
      chart(spectra, k.label + " by percentile", { lines: lines, xlog: true, ylog: true, toggle: true,
        xticks: [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7], xmin: 1, xmax: 100,
        xfmt: fmtPct, yfmt: fmtNs, xlabel: "percentile", ylabel: "latency" });
    });

    var rates = document.getElementById("rate-charts"), lines = [];
    streams.forEach(function (s) {
      lines.push({ name: s + " achieved", color: COLORS[s], points: series.map(function (p) { return [at(p), p[s].rate]; }) });
      lines.push({ name: s + " target", color: COLORS[s], dash: "5 4", width: 1.2, points: series.map(function (p) { return [at(p), p[s].target_rate]; }) });
    });
    chart(rates, "Achieved vs target rate", { lines: lines, shade: warm, marks: marks, xmin: 0, xfmt: fmtNum, yfmt: fmtNum, xlabel: "seconds since start", ylabel: "msgs/s" });

    var lt = document.getElementById("latency-time-charts");
    data.kinds.forEach(function (k) {
      var lines = [];
      streams.forEach(function (s) {
        ["p50", "p99", "max"].forEach(function (q) {
          lines.push({ name: s + " " + q, color: COLORS[s], dash: DASH[q],
                       points: series.map(function (p) { return [at(p), p[s][k.name] ? p[s][k.name][q] : null]; }) });
        });
      });
      chart(lt, k.label + " over time", { lines: lines, ylog: true, toggle: true, shade: warm, marks: marks, xmin: 0, xfmt: fmtNum, yfmt: fmtNs, xlabel: "seconds since start", ylabel: "latency" });
    });

    var res = document.getElementById("resource-charts");
    chart(res, "CPU of the tester process", { lines: [{ name: "CPU % of one core", color: "#7b3fb2", points: series.map(function (p) { return [at(p), p.cpu_pct]; }) }],
      shade: warm, marks: marks, xmin: 0, xfmt: fmtNum, yfmt: fmtNum, xlabel: "seconds since start", ylabel: "% of one core" });
    chart(res, "Resident memory of the tester process", { lines: [{ name: "RSS MiB (peak in point)", color: "#0f8b8d", points: series.map(function (p) { return [at(p), p.rss_mib]; }) }],
      shade: warm, marks: marks, xmin: 0, xfmt: fmtNum, yfmt: fmtNum, xlabel: "seconds since start", ylabel: "MiB" });

    var errs = document.getElementById("error-charts");
    chart(errs, "Errors per point (failed writes and buffer overflows)", {
      lines: streams.map(function (s) { return { name: s, color: COLORS[s], points: series.map(function (p) { return [at(p), p[s].errors]; }) }; }),
      shade: warm, marks: marks, xmin: 0, xfmt: fmtNum, yfmt: fmtNum, xlabel: "seconds since start", ylabel: "errors" });

    body.dataset.charts = String(document.querySelectorAll(".chart svg").length);
    if (body.dataset.rendered !== "error") { body.dataset.rendered = "ok"; }
  } catch (e) {
    fail(e && e.stack ? e.stack : String(e));
  }
})();
"##;

fn row(out: &mut String, cells: &[String]) {
    out.push_str("<tr>");
    for c in cells {
        let _ = write!(out, "<td>{c}</td>");
    }
    out.push_str("</tr>\n");
}

fn head(out: &mut String, cells: &[&str]) {
    out.push_str("<thead><tr>");
    for c in cells {
        let _ = write!(out, "<th>{}</th>", escape(c));
    }
    out.push_str("</tr></thead>\n");
}

/// A duration cell: the value in the unit that reads best, the exact nanoseconds on hover.
fn ns(v: u64) -> String {
    format!(
        "<span title=\"{} ns\">{}</span>",
        thousands(v),
        escape(&human_ns(v))
    )
}

fn throughput_row(out: &mut String, name: &str, t: &StreamThroughput) {
    row(
        out,
        &[
            escape(name),
            thousands(t.sent),
            thousands(t.target_rate.round() as u64),
            thousands(t.actual_rate.round() as u64),
            thousands(t.peak_rate.round() as u64),
            format!("{:.1}%", t.achievement_pct),
            thousands(t.backlog),
        ],
    );
}

fn latency_row(out: &mut String, name: &str, s: &LatencySummary) {
    row(
        out,
        &[
            escape(name),
            thousands(s.count),
            ns(s.min),
            ns(s.mean.round() as u64),
            ns(s.p50),
            ns(s.p90),
            ns(s.p99),
            ns(s.p999),
            ns(s.p9999),
            ns(s.max),
        ],
    );
}

/// The percentile spectrum of one histogram: `[1/(1-q), value]` points up to (not including)
/// 100%, and the maximum.
fn spectrum(s: &LatencySummary) -> serde_json::Value {
    match s.decode() {
        Ok(h) if !h.is_empty() => {
            let points: Vec<[f64; 2]> = super::hlog::percentile_steps(&h, SPECTRUM_TICKS_PER_HALF)
                .iter()
                .filter(|s| s.percentile < 100.0)
                .map(|s| [100.0 / (100.0 - s.percentile), s.value as f64])
                .collect();
            json!({ "points": points, "max": h.max(), "count": h.len() })
        }
        _ => json!({ "points": [], "max": 0, "count": 0 }),
    }
}

fn section_config(out: &mut String, r: &Results) {
    let p = &r.plan;
    out.push_str("<h2 id=\"configuration\">Configuration</h2>\n<table>\n");
    // One value when every exchange has the same, else the list in exchange order.
    let rates = |f: fn(&crate::plan::ExchangePlan) -> u64| {
        let mut v: Vec<u64> = p.exchanges.iter().map(f).collect();
        v.dedup();
        v.iter()
            .map(|x| thousands(*x))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let caps = rates;
    let mut items: Vec<(&str, String)> = Vec::new();
    if let Some(rp) = &p.replay {
        items.push((
            "Replay",
            format!(
                "{} at speed {}{}, {:.3} s of recorded time (rates: the capture's mean)",
                rp.file,
                rp.speed,
                if rp.looped { ", looped" } else { "" },
                (rp.to_ns - rp.from_ns) as f64 / 1e9
            ),
        ));
    }
    if let Some(path) = &p.record {
        items.push(("Recorded into", path.clone()));
    }
    items.extend(vec![
        (
            "Exchanges",
            format!(
                "{} ({})",
                p.exchanges.len(),
                p.exchanges
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "Trades per second, per exchange",
            rates(|e| e.trades_per_sec),
        ),
        (
            "Order-book updates per second, per exchange",
            rates(|e| e.book_per_sec),
        ),
        (
            "Total target rate",
            format!("{} msgs/s", thousands(p.total_target_rate())),
        ),
        ("Symbols per exchange", p.symbols.len().to_string()),
        (
            "Duration",
            format!(
                "{} s measured after {} s warm-up (measured {:.1} s)",
                p.duration_secs, p.warmup_secs, r.measured_secs
            ),
        ),
        (
            "Writer mode",
            match p.writer_mode {
                crate::plan::WriterMode::Backpressure => "backpressure",
                crate::plan::WriterMode::Overwrite => "overwrite",
            }
            .into(),
        ),
        (
            "Ring capacity (records, trades / book)",
            format!(
                "{} / {}",
                caps(|e| e.trades_capacity),
                caps(|e| e.book_capacity)
            ),
        ),
        (
            "Generator",
            format!(
                "{} thread(s), pacing {}, clock {}{}",
                p.threads,
                p.pacing.describe(),
                p.clock.name(),
                if p.pin_cores.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", pinned to cores {}",
                        p.pin_cores
                            .iter()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ),
        (
            "Reader processes",
            if p.reader_pin_cores.is_empty() {
                p.consumers.to_string()
            } else {
                format!(
                    "{}, pinned to cores {}",
                    p.consumers,
                    p.reader_pin_cores
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ),
        ("Seed", p.seed.to_string()),
        (
            "Lag budget (run invalid above)",
            format!("{} at P99", human_ns(p.lag_budget_ns)),
        ),
        ("Started (UTC)", iso8601_utc(r.started_unix_ms)),
        ("Tool", format!("{} {}", r.tool.name, r.tool.version)),
    ]);
    for (k, v) in items {
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(k),
            escape(&v)
        );
    }
    out.push_str("</table>\n");
}

fn section_verdict(out: &mut String, r: &Results) {
    out.push_str("<h2 id=\"verdict\">Verdict</h2>\n");
    if let Some(reason) = &r.verdict.invalid_reason {
        let _ = writeln!(
            out,
            "<p class=\"note\"><b>INVALID:</b> {}</p>",
            escape(reason)
        );
    }
    if let Some(signal) = &r.interrupted {
        let _ = writeln!(
            out,
            "<p class=\"note\">Interrupted by {} after {:.1} s of measurement.</p>",
            escape(signal),
            r.measured_secs
        );
    }
    out.push_str("<table id=\"checks\">\n");
    head(out, &["Target", "Measured", "Target", "Unit", "Status"]);
    for c in &r.verdict.checks {
        let measured = match c.unit.as_str() {
            "%" => format!("{:.3}", c.measured),
            "MiB" => format!("{:.1}", c.measured),
            // A slope has a sign: a shrinking RSS is negative, not 0.
            "MiB/h" => format!("{:+.1}", c.measured),
            _ => thousands(c.measured.round().max(0.0) as u64),
        };
        let (class, status) = if c.passed {
            ("pass", "✓ met")
        } else {
            ("fail", "✗ missed")
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{measured}</td><td>{}</td><td>{}</td><td class=\"{class}\">{status}</td></tr>",
            escape(&c.name),
            escape(&crate::output::format::format_target(&c.target, &c.unit)),
            escape(&c.unit)
        );
    }
    out.push_str("</table>\n");
}

fn comparison_rows(out: &mut String, metrics: &[&crate::results::compare::Metric]) {
    head(
        out,
        &[
            "Metric",
            "Unit",
            "Baseline",
            "Current",
            "Change",
            "Threshold",
            "Status",
        ],
    );
    let mut section = "";
    for m in metrics {
        if m.section != section {
            section = &m.section;
            let _ = writeln!(out, "<tr><th colspan=\"7\">{}</th></tr>", escape(section));
        }
        let (class, status) = match &m.status {
            Status::Ok => ("", "ok".to_string()),
            Status::Improved => ("improved", "improved".to_string()),
            Status::Regressed => ("regressed", "REGRESSED".to_string()),
            Status::NotJudged(r) if r == "no threshold" => ("muted", String::new()),
            Status::NotJudged(r) => ("muted", format!("not judged: {r}")),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\" title=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            escape(&m.key),
            escape(&m.label),
            escape(m.unit),
            format_value(m.baseline, m.unit),
            format_value(m.current, m.unit),
            format_change(m.change_pct),
            format_threshold(m),
            escape(&status)
        );
    }
}

/// The comparison's summary: regressions and improvements, with the warnings.
fn section_comparison(out: &mut String, c: &Comparison) {
    out.push_str("<h2 id=\"comparison\">Comparison with the baseline</h2>\n");
    let regressions = c.regressions().count();
    let _ = writeln!(
        out,
        "<p>Baseline: <code>{}</code>. {} The full table of every metric is <a href=\"#all-metrics\">at the end</a>.</p>",
        escape(&c.baseline),
        if regressions == 0 {
            "<span class=\"pass\">No regression.</span>".to_string()
        } else {
            format!(
                "<span class=\"fail\">{regressions} regression{}.</span>",
                if regressions == 1 { "" } else { "s" }
            )
        }
    );
    for w in &c.warnings {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(w));
    }
    let changed: Vec<&crate::results::compare::Metric> = c
        .metrics
        .iter()
        .filter(|m| matches!(m.status, Status::Regressed | Status::Improved))
        .collect();
    if !changed.is_empty() {
        out.push_str("<table id=\"comparison-changes\">\n");
        comparison_rows(out, &changed);
        out.push_str("</table>\n");
    }
}

/// Every compared metric, folded.
fn section_all_metrics(out: &mut String, c: &Comparison) {
    let _ = writeln!(
        out,
        "<h2 id=\"all-metrics\">Every metric against the baseline</h2>\n<details><summary>{} metrics</summary>\n<table id=\"comparison-table\">",
        c.metrics.len()
    );
    let all: Vec<&crate::results::compare::Metric> = c.metrics.iter().collect();
    comparison_rows(out, &all);
    out.push_str("</table>\n</details>\n");
}

/// What the readers received: counts, integrity, and each reader process.
/// The faults of a chaos run: one row each, then each one's log.
fn section_chaos(out: &mut String, c: &crate::results::chaos::ChaosResults) {
    let _ = writeln!(
        out,
        "<h2 id=\"chaos\">Faults</h2>\n<p class=\"sub\">Seed {}{}. Marked on the time \
         charts (a line at the injection, a band until the recovery). Detected: the first slice \
         of 10 ms that differed from the two seconds before, or what the tester saw; recovered: \
         the start of the first 100 ms of healthy slices after the fault's end.</p>\n<table id=\"chaos-table\">",
        c.seed,
        if c.restart_readers {
            ", killed readers restarted"
        } else {
            ""
        }
    );
    head(
        out,
        &[
            "#", "Fault", "Injected", "Detected", "By", "What", "Recovery", "Budget", "Lost",
            "Broken", "Result",
        ],
    );
    let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} s"));
    for f in &c.faults {
        row(
            out,
            &[
                f.id.to_string(),
                escape(&f.description),
                s(f.injected_s),
                s(f.detected_s),
                escape(f.detected_by.as_deref().unwrap_or("-")),
                escape(f.detection.as_deref().unwrap_or("-")),
                f.recovery_ms
                    .map_or("-".to_string(), |ms| format!("{ms:.1} ms")),
                format!("{} ms", f.budget_ms),
                thousands(f.lost),
                thousands(f.violations),
                format!(
                    "<span class=\"{}\">{}</span>",
                    if f.passed { "pass" } else { "fail" },
                    escape(&f.verdict)
                ),
            ],
        );
    }
    out.push_str("</table>\n");
    for f in &c.faults {
        let _ = writeln!(
            out,
            "<details><summary>Fault {}: {} ({})</summary>\n<table>",
            f.id,
            escape(&f.spec),
            if f.passed { "passed" } else { "failed" }
        );
        head(out, &["At", "What", "By", "Detail"]);
        for a in &f.log {
            row(
                out,
                &[
                    format!("{:.3} s", a.at_ns as f64 / 1e9),
                    format!("{:?}", a.what).to_lowercase(),
                    escape(&a.by),
                    escape(&a.detail),
                ],
            );
        }
        out.push_str("</table></details>\n");
    }
    let _ = writeln!(
        out,
        "<p>Explained by the faults: {} records lost, {} integrity violations.</p>",
        thousands(c.explained_lost),
        thousands(c.explained_violations)
    );
}

fn section_delivery(out: &mut String, d: &crate::results::Delivery) {
    let total = d.total();
    let written: u64 = d.written.values().sum();
    let _ = writeln!(
        out,
        "<h2 id=\"delivery\">Delivery</h2>\n<p class=\"sub\">{} reader process{}; end-to-end \
         latency is in the latency table. Losses {}.</p>\n<table>",
        d.readers,
        if d.readers == 1 { "" } else { "es" },
        if d.loss_allowed {
            "are allowed (<code>--allow-loss</code>)"
        } else {
            "fail the run"
        }
    );
    head(out, &["", "trades", "book", "total"]);
    let stream = |s: crate::plan::Stream| d.streams.get(&s).copied().unwrap_or_default();
    let (t, b) = (
        stream(crate::plan::Stream::Trades),
        stream(crate::plan::Stream::Book),
    );
    let written_of = |s: crate::plan::Stream| d.written.get(&s).copied().unwrap_or(0);
    for (label, f) in [
        (
            "Received (all readers)",
            (|i: &Integrity| i.received) as fn(&Integrity) -> u64,
        ),
        ("Lost to laps (exact)", |i| i.lost),
        ("Torn copies discarded (in lost)", |i| i.torn),
        ("Integrity violations", |i| i.violations()),
        ("Corrupted", |i| i.corrupted),
        ("Out of order", |i| i.out_of_order),
        ("Chain gaps", |i| i.gaps),
        ("Book errors", |i| i.book_errors),
        ("Books verified against the writer digests", |i| {
            i.digests_checked
        }),
        ("Digest mismatches", |i| i.digest_mismatches),
        ("Unaccounted", |i| i.unaccounted),
    ] {
        row(
            out,
            &[
                escape(label),
                thousands(f(&t)),
                thousands(f(&b)),
                thousands(f(&total)),
            ],
        );
    }
    row(
        out,
        &[
            "Written by the tester".into(),
            thousands(written_of(crate::plan::Stream::Trades)),
            thousands(written_of(crate::plan::Stream::Book)),
            thousands(written),
        ],
    );
    out.push_str("</table>\n<table>\n");
    head(
        out,
        &[
            "Reader",
            "Pid",
            "Ended",
            "Received",
            "Lost",
            "Violations",
            "CPU avg / peak (% of one core)",
            "Peak RSS (MiB)",
        ],
    );
    for r in &d.per_reader {
        row(
            out,
            &[
                r.index.to_string(),
                r.pid.to_string(),
                escape(r.died.as_deref().unwrap_or(&r.ended)),
                thousands(r.received),
                thousands(r.lost),
                thousands(r.violations),
                format!("{:.1} / {:.1}", r.cpu_avg_pct, r.cpu_peak_pct),
                format!("{:.1}", r.rss_peak_mib),
            ],
        );
    }
    out.push_str("</table>\n");
}

/// The report as one HTML document.
pub fn render(r: &Results, comparison: Option<&Comparison>) -> String {
    let (badge, word) = match r.verdict.outcome {
        Outcome::Passed => ("passed", "PASSED"),
        Outcome::Failed => ("failed", "FAILED"),
        Outcome::Invalid => ("invalid", "INVALID"),
    };
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>AlphaPulse load test {word} {}</title>\n<style>{STYLE}</style>\n</head>\n<body data-rendered=\"pending\">\n",
        iso8601_utc(r.started_unix_ms)
    );
    let p = &r.plan;
    let _ = writeln!(
        out,
        "<h1>AlphaPulse load test <span class=\"badge {badge}\" id=\"outcome\">{word}</span></h1>\n\
         <p class=\"sub\">{} exchanges × ({} trades + {} book updates)/s, {} s measured, started {} UTC, {} {}</p>",
        p.exchanges.len(),
        thousands(p.exchanges.first().map_or(0, |e| e.trades_per_sec)),
        thousands(p.exchanges.first().map_or(0, |e| e.book_per_sec)),
        format_args!("{:.1}", r.measured_secs),
        iso8601_utc(r.started_unix_ms),
        escape(&r.tool.name),
        escape(&r.tool.version)
    );
    out.push_str("<div id=\"report-errors\" hidden></div>\n");
    out.push_str("<noscript><p class=\"note\">The charts need JavaScript; every figure is in the tables.</p></noscript>\n");
    section_verdict(&mut out, r);
    if let Some(c) = comparison {
        section_comparison(&mut out, c);
    }
    section_config(&mut out, r);

    let tp = &r.throughput;
    out.push_str("<h2 id=\"throughput\">Throughput</h2>\n<table>\n");
    head(
        &mut out,
        &[
            "Stream",
            "Sent",
            "Target /s",
            "Actual /s",
            "Peak 1-s /s",
            "Achievement",
            "Due, never sent",
        ],
    );
    throughput_row(&mut out, "trades", &tp.trades);
    throughput_row(&mut out, "book", &tp.book);
    throughput_row(&mut out, "total", &tp.total);
    out.push_str("</table>\n<div class=\"charts\" id=\"rate-charts\"></div>\n");

    out.push_str("<h2 id=\"latency\">Latency</h2>\n<p class=\"sub\">Over the measured time (hover a value for its exact nanoseconds). Service time is the write call (the \
        targets' “write latency”); response time runs from the intended send time of the open-loop schedule, so stalls are not hidden; \
        generator lag is how late the tester started each write.</p>\n<table>\n");
    head(
        &mut out,
        &[
            "Latency", "Count", "Min", "Mean", "P50", "P90", "P99", "P99.9", "P99.99", "Max",
        ],
    );
    let kinds = kind_reports(r);
    for (kind, report) in &kinds {
        let _ = writeln!(
            out,
            "<tr><th colspan=\"10\">{}</th></tr>",
            escape(kind_label(kind))
        );
        latency_row(&mut out, "all", &report.all);
        latency_row(&mut out, "trades", &report.trades);
        latency_row(&mut out, "book", &report.book);
    }
    out.push_str(
        "</table>\n<h3>By percentile</h3>\n<div class=\"charts\" id=\"spectrum-charts\"></div>\n",
    );
    out.push_str("<h3>Over time (P50, P99, max per point)</h3>\n<div class=\"charts\" id=\"latency-time-charts\"></div>\n");

    let res = &r.resources;
    out.push_str("<h2 id=\"resources\">CPU and memory</h2>\n<table>\n");
    head(&mut out, &["Tester process", "Average", "Peak"]);
    row(
        &mut out,
        &[
            "CPU (% of one core)".into(),
            format!("{:.1}", res.cpu_avg_pct),
            format!("{:.1}", res.cpu_peak_pct),
        ],
    );
    row(
        &mut out,
        &[
            "CPU working (% of one core; the rest spun for send times; judged)".into(),
            format!("{:.1}", res.cpu_working_avg_pct),
            format!("{:.1}", res.cpu_working_peak_pct),
        ],
    );
    row(
        &mut out,
        &[
            "Resident memory (MiB)".into(),
            format!("{:.1}", res.rss_avg_mib),
            format!("{:.1}", res.rss_peak_mib),
        ],
    );
    row(
        &mut out,
        &[
            "Machine CPU (% of all cores)".into(),
            format!("{:.1}", res.system_cpu_avg_pct),
            "-".into(),
        ],
    );
    out.push_str("</table>\n<div class=\"charts\" id=\"resource-charts\"></div>\n");

    if let Some(d) = &r.delivery {
        section_delivery(&mut out, d);
    }
    if let Some(c) = &r.chaos {
        section_chaos(&mut out, c);
    }

    let e = &r.errors;
    out.push_str("<h2 id=\"errors\">Errors</h2>\n<table>\n");
    head(&mut out, &["", "Count"]);
    row(&mut out, &["Write attempts".into(), thousands(e.attempts)]);
    row(
        &mut out,
        &["Write failures".into(), thousands(e.write_failures)],
    );
    row(
        &mut out,
        &["Buffer overflows".into(), thousands(e.buffer_overflows)],
    );
    row(
        &mut out,
        &["Error rate".into(), format!("{:.4}%", e.error_rate_pct)],
    );
    row(
        &mut out,
        &[
            "Latencies above one minute (saturated)".into(),
            thousands(e.saturated),
        ],
    );
    out.push_str("</table>\n");
    if !r.warnings.is_empty() {
        out.push_str("<h3>Warnings</h3>\n<ul>\n");
        for w in &r.warnings {
            let _ = writeln!(out, "<li>{}</li>", escape(w));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<div class=\"charts\" id=\"error-charts\"></div>\n");
    if let Some(c) = comparison {
        section_all_metrics(&mut out, c);
    }

    let spectra: serde_json::Map<String, serde_json::Value> = kinds
        .iter()
        .map(|(kind, report)| {
            (
                kind.to_string(),
                json!({
                    "all": spectrum(&report.all),
                    "trades": spectrum(&report.trades),
                    "book": spectrum(&report.book),
                }),
            )
        })
        .collect();
    let data = json!({
        "warmup_secs": p.warmup_secs as f64 * p.interval_ns as f64 / 1e9,
        "kinds": kinds.iter().map(|(k, _)| json!({"name": k, "label": kind_label(k)})).collect::<Vec<_>>(),
        "spectra": spectra,
        "series": r.series,
        "faults": r.chaos.iter().flat_map(|c| &c.faults).map(|f| json!({
            "id": f.id,
            "at": f.injected_s.unwrap_or(f.scheduled_s),
            "end": f.recovered_s.or(f.ended_s).unwrap_or(f.scheduled_s),
            "label": format!("{}: {}", f.description, f.verdict),
        })).collect::<Vec<_>>(),
    });
    // `<` only occurs inside JSON strings, where `\u003c` means the same: no `</script>` can
    // end the element early.
    let data = data.to_string().replace('<', "\\u003c");
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"report-data\">{data}</script>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

/// A comparison of transports as a self-contained page: the table, and each run's verdict
/// with the reasons of its failed checks.
pub fn render_transports(c: &crate::results::transports::TransportComparison) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let started = c.runs.first().map_or(0, |r| r.started_unix_ms);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>AlphaPulse transport comparison {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        iso8601_utc(started)
    );
    let _ = writeln!(
        out,
        "<h1>AlphaPulse transport comparison</h1>\n<p class=\"sub\">The same load on each \
         transport in turn, started {} UTC. End-to-end: send timestamp to copied out by a reader; \
         write: the send call; CPU: percent of one core.</p>",
        iso8601_utc(started)
    );
    out.push_str(
        "<table id=\"transports\">\n<tr><th>Transport</th><th>e2e p50</th><th>p90</th><th>p99</th>\
         <th>p99.9</th><th>max</th><th>write p50</th><th>write p99</th><th>rate/s</th>\
         <th>achieved</th><th>max rate/s</th><th>lost</th><th>violations</th><th>CPU writer</th><th>CPU readers</th>\
         <th>verdict</th></tr>\n",
    );
    for r in &c.rows {
        let word = match r.outcome {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
        };
        let _ = write!(out, "<tr><th>{}</th>", escape(&r.transport));
        for ns in r.e2e_ns.iter().chain(&r.write_ns) {
            let _ = write!(out, "<td title=\"{ns} ns\">{}</td>", escape(&human_ns(*ns)));
        }
        let _ = writeln!(
            out,
            "<td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}%</td><td>{:.0}%</td>\
             <td><span class=\"badge {word}\">{}</span></td></tr>",
            thousands(r.achieved_rate.round() as u64),
            r.achievement_pct,
            escape(&crate::output::format::format_max_rate(r.max_rate.as_ref())),
            thousands(r.lost),
            thousands(r.violations),
            r.writer_cpu_pct,
            r.readers_cpu_pct,
            word.to_uppercase()
        );
    }
    out.push_str("</table>\n");
    for r in &c.rows {
        let Some(m) = &r.max_rate else { continue };
        let probes: Vec<String> = m
            .probes
            .iter()
            .map(|p| {
                format!(
                    "{} offered, {} written: {}",
                    thousands(p.offered.round() as u64),
                    thousands(p.achieved.round() as u64),
                    p.failed.as_deref().unwrap_or("sustained")
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<p class=\"note\"><b>{}</b> max rate search ({} s a probe, msgs/s): {}</p>",
            escape(&r.transport),
            m.probe_secs,
            escape(&probes.join("; "))
        );
    }
    for run in &c.runs {
        let failed: Vec<String> = run
            .verdict
            .checks
            .iter()
            .filter(|k| !k.passed)
            .map(|k| format!("{} (target {}, measured {})", k.name, k.target, k.measured))
            .collect();
        if !failed.is_empty() || run.verdict.invalid_reason.is_some() {
            let _ = writeln!(
                out,
                "<p class=\"note\"><b>{}</b>: {}{}</p>",
                escape(run.plan.transport.kind.name()),
                escape(run.verdict.invalid_reason.as_deref().unwrap_or("")),
                escape(&failed.join("; "))
            );
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// Writes the report to `target` (see [`super::files::Target::write`]).
pub fn write(
    r: &Results,
    comparison: Option<&Comparison>,
    target: &super::files::Target,
) -> std::io::Result<()> {
    target.write(render(r, comparison).as_bytes())
}

#[cfg(test)]
mod tests {
    use crate::output::html::*;
    use crate::results::testdata::sample_results;

    #[test]
    fn a_transport_comparison_page_shows_every_row() {
        let mut a = sample_results(1);
        let mut b = sample_results(2);
        a.plan.transport.kind = crate::plan::transport::TransportKind::Shm;
        b.plan.transport.kind = crate::plan::transport::TransportKind::Udp;
        let c = crate::results::transports::TransportComparison::of(vec![a, b]);
        let html = render_transports(&c);
        assert!(html.starts_with("<!DOCTYPE html>") && html.contains("default-src 'none'"));
        for row in &c.rows {
            assert!(html.contains(&format!("<tr><th>{}</th>", row.transport)));
            assert!(html.contains(&format!("title=\"{} ns\"", row.e2e_ns[0])));
        }
    }

    #[test]
    fn report_is_self_contained_and_shows_the_results() {
        let r = sample_results(1);
        let html = render(&r, None);
        assert!(html.starts_with("<!DOCTYPE html>"));
        for forbidden in ["src=\"http", "href=\"http", "src='http", "@import", "url("] {
            assert!(!html.contains(forbidden), "{forbidden}");
        }
        assert!(html.contains("default-src 'none'"));
        let outcome = format!("{:?}", r.verdict.outcome).to_uppercase();
        assert!(html.contains(&format!("id=\"outcome\">{outcome}<")));
        for c in &r.verdict.checks {
            assert!(html.contains(&escape(&c.name)), "{}", c.name);
        }
        let s = &r.latency.service.all;
        // Human units in the cell, the exact nanoseconds on hover.
        assert!(html.contains(&format!(
            "<span title=\"{} ns\">{}</span>",
            thousands(s.p99),
            crate::output::human_ns(s.p99)
        )));
        assert!(html.contains(&format!("<td>{}</td>", thousands(r.throughput.total.sent))));
        // The flags' names, not the program's own.
        for internal in ["Hybrid", "Monotonic", "Tsc", "Overwrite"] {
            assert!(!html.contains(internal), "{internal}");
        }
        // What the readers received.
        let d = r.delivery.as_ref().expect("the fixture had a reader");
        assert!(html.contains("id=\"delivery\""));
        assert!(html.contains("Books verified against the writer digests"));
        assert!(html.contains(&format!("<td>{}</td>", thousands(d.total().received))));
        // The embedded data parses and carries every point and a spectrum per kind and stream.
        let start = html.find("id=\"report-data\">").unwrap() + "id=\"report-data\">".len();
        let end = start + html[start..].find("</script>").unwrap();
        let data: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
        assert_eq!(data["series"].as_array().unwrap().len(), r.series.len());
        let pts = data["spectra"]["service"]["trades"]["points"]
            .as_array()
            .unwrap();
        assert!(pts.len() > 10);
        assert_eq!(
            data["spectra"]["service"]["all"]["max"].as_u64().unwrap(),
            s.max
        );
        // Percentile x values grow, latencies never fall.
        for w in pts.windows(2) {
            assert!(w[0][0].as_f64() <= w[1][0].as_f64());
            assert!(w[0][1].as_f64() <= w[1][1].as_f64());
        }
    }

    #[test]
    fn a_chaos_run_shows_each_fault_in_a_table_and_on_the_charts() {
        use crate::results::testdata::sample_chaos;
        let mut r = sample_results(1);
        r.chaos = Some(sample_chaos());
        let html = render(&r, None);
        assert!(html.contains("id=\"chaos-table\""));
        assert!(html.contains("Seed 7, killed readers restarted"));
        assert!(html.contains("<td>1,234</td>"));
        assert!(html.contains("<span class=\"pass\">recovered in 30 ms</span>"));
        assert!(html.contains("<span class=\"fail\">not detected</span>"));
        // Text from the run is escaped, in the table and in the chart data.
        assert!(html.contains("end-to-end &lt;200 ms&gt;"));
        assert!(html.contains("stopped reader 0 (SIGSTOP)"));
        let data = &html[html.find("id=\"report-data\">").unwrap()..];
        assert!(data.contains("\"faults\":[{"), "{}", &data[..200]);
        assert!(data.contains("\"at\":2.0"));
        assert!(data.contains("\"end\":2.23"));
        assert!(!data[..data.find("</script>").unwrap()].contains('<'));
        assert!(html.contains("fault-mark"));
    }

    #[test]
    fn hostile_text_cannot_break_out_of_the_page() {
        let mut r = sample_results(1);
        r.warnings.push("</script><script>alert(1)</script>".into());
        r.plan.exchanges[0].name = "<img src=x onerror=alert(1)>".into();
        let html = render(&r, None);
        assert!(!html.contains("<script>alert(1)"));
        assert!(!html.contains("<img src=x"));
        assert_eq!(html.matches("</script>").count(), 2);
    }

    #[test]
    fn comparison_colours_regressions() {
        use crate::results::compare::{compare, Thresholds};
        use crate::results::file::Loaded;
        let base = Loaded::new("base.json".into(), sample_results(1)).unwrap();
        let cur = Loaded::new("this run".into(), sample_results(3)).unwrap();
        let c = compare(
            &base,
            &cur,
            &Thresholds::default(),
            vec!["configuration differs: seed".into()],
        );
        let html = render(&cur.results, Some(&c));
        assert!(html.contains("id=\"comparison\""));
        // Each regression is in the summary and in the full table.
        assert_eq!(
            html.matches("<tr class=\"regressed\"").count(),
            2 * c.regressions().count()
        );
        assert!(html.contains("id=\"all-metrics\""));
        assert!(c.regressions().count() > 0);
        assert!(html.contains("configuration differs: seed"));
    }
}

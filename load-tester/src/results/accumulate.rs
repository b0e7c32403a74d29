//! From the stream of merged interval reports to [`Results`].
//!
//! [`RunAccumulator`] observes the run: it folds each complete interval into running totals
//! (warm-up and measured apart), the time series and the resource samples, keeping no interval
//! itself, so memory stays flat however long the run. [`RunAccumulator::finish`] turns the
//! totals and the run's [`RunEnd`] into the results. Feeding the same reports to a fresh
//! accumulator gives the same results: that is what lets a coordinator build a distributed
//! run's results from its workers' reports.

use crate::plan::chaos::FaultKind;
use std::collections::BTreeMap;

use crate::plan::{Plan, Stream};
use crate::report::end::RunEnd;
use crate::report::observe::{Observer, RunStart};
use crate::report::{
    reader_process, GeneratorTime, Integrity, IntervalReport, Kind, Latencies, ProcessUsage,
    SourceId, SourceReport, TESTER_PROCESS,
};
use crate::results::series::{Point, PointAccumulator};
use crate::results::verdict::Verdict;
use crate::results::{
    Bursts, Degradation, Delivery, Errors, ExchangeReport, GeneratorHealth, KindReport, Latency,
    LatencySummary, ReaderSummary, Resources, Results, SourceSummary, StreamThroughput, Throughput,
    Tool, Warmup, MIN_GROWTH_SPAN_SECS, SCHEMA_VERSION,
};

/// Everything the results need, folded from the interval reports as they come.
///
/// Invariants: `intervals` reports were added, with indices `0..intervals` in order; `warmup`
/// and `measured` hold the sums of the sources of the warm-up and the measured intervals;
/// `point` holds the intervals since the last point pushed to `series`.
pub struct RunAccumulator {
    /// The plan of the run; fixed.
    plan: Plan,
    /// One past the index of the last report added (0 before the first): the count of reports
    /// while they come in order, as `add` requires (it does not check).
    intervals: u64,
    /// Per source, the sum of the warm-up intervals (`index < plan.warmup_intervals()`).
    warmup: BTreeMap<SourceId, SourceReport>,
    /// Per source, the sum of the measured intervals (every later one).
    measured: BTreeMap<SourceId, SourceReport>,
    /// Per source, the most records sent in one measured interval.
    peak_sent: BTreeMap<SourceId, u64>,
    /// Covered time of the measured intervals, ns.
    measured_ns: u64,
    /// Generator time over the measured intervals.
    generator: GeneratorTime,
    /// The tester's resource samples of the measured intervals, each with the generator's
    /// spinning in that interval, ns.
    tester: Vec<(ProcessUsage, u64)>,
    /// Each reader's resource samples of the measured intervals, by process name.
    readers: BTreeMap<String, Vec<ProcessUsage>>,
    /// Per stream, latencies of the measured intervals inside bursts (sources with a burst
    /// pattern only).
    burst_in: BTreeMap<Stream, Latencies>,
    /// Per stream, latencies of the measured intervals outside bursts (burst patterns only).
    burst_out: BTreeMap<Stream, Latencies>,
    /// The finished points, in time order; each covers at most `plan.point_secs.max(1)`
    /// intervals and none mixes warm-up and measured ones.
    series: Vec<Point>,
    /// The point being summed; `None` before the first report and after each flush.
    point: Option<PointAccumulator>,
    /// A chaos run with stall-generator faults: the lag of the measured intervals none of them
    /// touched (`None` otherwise).
    lag_outside_stalls: Option<hdrhistogram::Histogram<u64>>,
}

impl RunAccumulator {
    /// An accumulator for a run of `plan`.
    pub fn new(plan: &Plan) -> Self {
        Self {
            plan: plan.clone(),
            intervals: 0,
            warmup: BTreeMap::new(),
            measured: BTreeMap::new(),
            peak_sent: BTreeMap::new(),
            measured_ns: 0,
            generator: GeneratorTime::default(),
            tester: Vec::new(),
            readers: BTreeMap::new(),
            burst_in: BTreeMap::new(),
            burst_out: BTreeMap::new(),
            series: Vec::new(),
            point: None,
            lag_outside_stalls: plan
                .chaos
                .as_ref()
                .filter(|c| c.faults.iter().any(|f| f.kind == FaultKind::StallGenerator))
                .map(|_| crate::report::histogram::new_histogram()),
        }
    }

    /// Whether interval `index` overlaps a stall-generator fault or its recovery budget.
    fn stalled(&self, index: u64) -> bool {
        let (from, to) = (
            index * self.plan.interval_ns,
            (index + 1) * self.plan.interval_ns,
        );
        self.plan
            .chaos
            .iter()
            .flat_map(|c| &c.faults)
            .any(|f| f.kind == FaultKind::StallGenerator && f.at_ns < to && f.deadline_ns() > from)
    }

    /// Folds in the next interval's report; reports must come in index order without gaps, as
    /// the engine's [`crate::report::collect::Collector`] emits them.
    pub fn add(&mut self, r: &IntervalReport) {
        let warm = r.index < self.plan.warmup_intervals();
        self.intervals = r.index + 1;
        let totals = if warm {
            &mut self.warmup
        } else {
            &mut self.measured
        };
        for (id, s) in &r.sources {
            // Reports were validated when they were merged: adding cannot fail.
            let _ = totals.entry(*id).or_default().add(s);
        }
        if !warm {
            let stalled = self.stalled(r.index);
            if let Some(lag) = self.lag_outside_stalls.as_mut().filter(|_| !stalled) {
                for s in r.sources.values() {
                    if let Some(h) = s.latency.get(Kind::Lag) {
                        let _ = lag.add(h);
                    }
                }
            }
            self.measured_ns += r.covered_ns;
            self.generator.add(&r.generator);
            for (id, s) in &r.sources {
                let peak = self.peak_sent.entry(*id).or_default();
                *peak = (*peak).max(s.writer.sent);
                let burst = self
                    .plan
                    .exchanges
                    .iter()
                    .find(|e| e.id == id.exchange)
                    .and_then(|e| e.pattern(id.stream).in_burst(r.index));
                if let Some(inside) = burst {
                    let acc = if inside {
                        &mut self.burst_in
                    } else {
                        &mut self.burst_out
                    };
                    let _ = acc.entry(id.stream).or_default().add(&s.latency);
                }
            }
            for (name, u) in &r.processes {
                if name == TESTER_PROCESS {
                    self.tester.push((*u, r.generator.spin_ns));
                } else {
                    self.readers.entry(name.clone()).or_default().push(*u);
                }
            }
        }
        // An interval no generator covered is after the load ended (the readers' last reports,
        // of what they copied after it): it counts in the totals above, but it is no second of
        // the run, so it gets no point of the series.
        if r.covered_ns == 0 && r.index > 0 {
            return;
        }
        let point_secs = self.plan.point_secs.max(1);
        let point = self
            .point
            .get_or_insert_with(|| PointAccumulator::new(r.index, warm, r.length_ns));
        point.add(r);
        if point.count() >= point_secs || r.index + 1 == self.plan.warmup_intervals() {
            self.flush_point();
        }
    }

    fn flush_point(&mut self) {
        if let Some(p) = self.point.take() {
            self.series.push(p.point());
        }
    }

    /// The results: everything folded in, with the facts of `end`. `interrupted` names the
    /// signal that stopped the run, if one did; `allow_loss` is `--allow-loss`. The verdict is
    /// left for [`crate::results::judge::judge`].
    pub fn finish(
        mut self,
        end: &RunEnd,
        interrupted: Option<String>,
        allow_loss: bool,
    ) -> Results {
        self.flush_point();
        let plan = &self.plan;
        let secs = self.measured_ns as f64 / 1e9;
        let by = |f: &dyn Fn(&SourceId) -> bool| {
            let mut out = SourceReport::default();
            for (id, s) in &self.measured {
                if f(id) {
                    let _ = out.add(s);
                }
            }
            out
        };
        let peak_of = |f: &dyn Fn(&SourceId) -> bool| -> u64 {
            self.peak_sent
                .iter()
                .filter(|(id, _)| f(id))
                .map(|(_, n)| n)
                .sum()
        };
        let tp = |s: &SourceReport, peak: f64| throughput(s, secs, peak);
        let trades = by(&|id| id.stream == Stream::Trades);
        let book = by(&|id| id.stream == Stream::Book);
        let all = by(&|_| true);
        let total_peak = self
            .series
            .iter()
            .filter(|p| !p.warmup)
            .map(|p| p.total_rate() as u64)
            .max()
            .unwrap_or(0);
        let per_exchange = plan
            .exchanges
            .iter()
            .map(|e| {
                let src = |stream| {
                    self.measured
                        .get(&SourceId {
                            exchange: e.id,
                            stream,
                        })
                        .cloned()
                        .unwrap_or_default()
                };
                let peak = |stream| {
                    peak_of(&|id: &SourceId| id.exchange == e.id && id.stream == stream) as f64
                };
                let (t, b) = (src(Stream::Trades), src(Stream::Book));
                ExchangeReport {
                    name: e.name.clone(),
                    trades: tp(&t, peak(Stream::Trades)),
                    book: tp(&b, peak(Stream::Book)),
                    trades_service: LatencySummary::of_opt(t.latency.get(Kind::Service)),
                    book_service: LatencySummary::of_opt(b.latency.get(Kind::Service)),
                }
            })
            .collect();
        let kind_report = |kind: Kind| KindReport {
            trades: LatencySummary::of_opt(trades.latency.get(kind)),
            book: LatencySummary::of_opt(book.latency.get(kind)),
            all: LatencySummary::of_opt(all.latency.get(kind)),
        };
        let w = &all.writer;
        let attempts = w.attempts();
        let errors = Errors {
            attempts,
            buffer_overflows: w.buffer_overflows,
            write_failures: w.write_failures,
            error_rate_pct: if attempts > 0 {
                100.0 * w.errors() as f64 / attempts as f64
            } else {
                0.0
            },
            saturated: w.saturated,
        };
        let thread_ns = self.generator.thread_ns.max(1) as f64;
        let wait_pct = 100.0 * self.generator.wait_ns as f64 / thread_ns;
        let spin_pct = 100.0 * self.generator.spin_ns as f64 / thread_ns;
        let write_pct = 100.0 * self.generator.write_ns as f64 / thread_ns;
        let mut warm_all = SourceReport::default();
        for s in self.warmup.values() {
            let _ = warm_all.add(s);
        }
        let delivery = (plan.consumers > 0).then(|| self.delivery(end, allow_loss));
        let bursts = self.bursts();
        Results {
            schema_version: SCHEMA_VERSION,
            tool: Tool {
                name: env!("CARGO_PKG_NAME").into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            started_unix_ms: end.started_unix_ms,
            plan: plan.clone(),
            measured_secs: secs,
            interrupted,
            throughput: Throughput {
                trades: tp(&trades, peak_of(&|id| id.stream == Stream::Trades) as f64),
                book: tp(&book, peak_of(&|id| id.stream == Stream::Book) as f64),
                total: tp(&all, total_peak as f64),
                per_exchange,
            },
            latency: Latency {
                service: kind_report(Kind::Service),
                response: kind_report(Kind::Response),
                lag: kind_report(Kind::Lag),
            },
            errors,
            resources: Resources::of_tester(&self.tester),
            generator: GeneratorHealth {
                threads: plan.threads,
                clock_cost_ns: end.clock_cost_ns,
                wait_pct,
                spin_pct,
                write_pct,
                overhead_pct: (100.0 - wait_pct - write_pct).max(0.0),
                lag_budget_ns: plan.lag_budget_ns,
                backlog: all.writer.backlog,
                spin_window_ns: end
                    .pacing
                    .iter()
                    .filter(|p| {
                        plan.pacing.mode == crate::plan::PacingMode::Hybrid && p.window_ns > 0
                    })
                    .map(|p| p.window_ns)
                    .max()
                    .unwrap_or(0),
                sleep_late_p99_ns: end.pacing.iter().map(|p| p.late_p99_ns).max().unwrap_or(0),
                cores: end.cores,
                lag_p99_outside_stalls_ns: self
                    .lag_outside_stalls
                    .as_ref()
                    .map(|h| h.value_at_quantile(0.99)),
            },
            degradation: degradation(&self.series),
            warmup: Warmup {
                secs: plan.warmup_secs,
                sent: warm_all.writer.sent,
                service: LatencySummary::of_opt(warm_all.latency.get(Kind::Service)),
            },
            delivery,
            bursts,
            sources: self
                .measured
                .iter()
                .map(|(id, s)| SourceSummary {
                    exchange: id.exchange,
                    stream: id.stream,
                    counters: s.writer,
                    service: LatencySummary::of_opt(s.latency.get(Kind::Service)),
                    response: LatencySummary::of_opt(s.latency.get(Kind::Response)),
                    lag: LatencySummary::of_opt(s.latency.get(Kind::Lag)),
                })
                .collect(),
            series: self.series.clone(),
            warnings: end.warnings.clone(),
            verdict: Verdict::default(),
            workers: None,
            chaos: end.chaos.as_ref().and_then(|log| {
                crate::results::chaos::judge(log, plan.total_secs() * 1_000_000_000)
            }),
        }
    }

    fn bursts(&self) -> Option<Bursts> {
        if self.burst_in.is_empty() && self.burst_out.is_empty() {
            return None;
        }
        let merge = |m: &BTreeMap<Stream, Latencies>| {
            let mut all = Latencies::default();
            for l in m.values() {
                let _ = all.add(l);
            }
            all
        };
        let (inside, outside) = (merge(&self.burst_in), merge(&self.burst_out));
        Some(Bursts {
            inside_service: LatencySummary::of_opt(inside.get(Kind::Service)),
            outside_service: LatencySummary::of_opt(outside.get(Kind::Service)),
            inside_response: LatencySummary::of_opt(inside.get(Kind::Response)),
            outside_response: LatencySummary::of_opt(outside.get(Kind::Response)),
        })
    }

    fn delivery(&self, end: &RunEnd, allow_loss: bool) -> Delivery {
        let mut written: BTreeMap<Stream, u64> = BTreeMap::new();
        let mut streams: BTreeMap<Stream, Integrity> = BTreeMap::new();
        let mut e2e: BTreeMap<Stream, Latencies> = BTreeMap::new();
        let mut net_dropped = 0;
        for (id, s) in self.warmup.iter().chain(&self.measured) {
            *written.entry(id.stream).or_default() += s.writer.sent;
            net_dropped += s.writer.net_dropped;
            streams.entry(id.stream).or_default().add(&s.reader);
        }
        for (id, s) in &self.measured {
            if let Some(h) = s.latency.get(Kind::E2e) {
                let _ = e2e.entry(id.stream).or_default().get_mut(Kind::E2e).add(h);
            }
        }
        let mut per_reader = Vec::new();
        for r in &end.readers {
            let mut total = Integrity::default();
            if let Some(o) = &r.outcome {
                for (stream, d) in &o.streams {
                    let mut i = d.integrity;
                    // What a reader accounted for must be exactly what the tester wrote.
                    let w = written.get(stream).copied().unwrap_or(0);
                    if o.ended == "writers closed" && i.unaccounted == 0 && i.accounted != w {
                        let missing = i.accounted.abs_diff(w);
                        i.unaccounted = missing;
                        streams.entry(*stream).or_default().unaccounted += missing;
                    }
                    total.add(&i);
                }
            }
            let res = Resources::of(
                self.readers
                    .get(&reader_process(r.index))
                    .map_or(&[][..], Vec::as_slice),
            );
            per_reader.push(ReaderSummary {
                index: r.index,
                pid: r.pid,
                ended: r
                    .outcome
                    .as_ref()
                    .map_or_else(|| "died".to_string(), |o| o.ended.clone()),
                died: r.died.clone(),
                received: total.received,
                lost: total.lost,
                violations: total.violations(),
                cpu_avg_pct: res.cpu_avg_pct,
                cpu_peak_pct: res.cpu_peak_pct,
                rss_peak_mib: res.rss_peak_mib,
                capture: r.outcome.as_ref().and_then(|o| o.capture.clone()),
                foreign_datagrams: r.outcome.as_ref().map_or(0, |o| o.foreign_datagrams),
            });
        }
        let mut all = Latencies::default();
        for l in e2e.values() {
            let _ = all.add(l);
        }
        let of = |s: Stream| LatencySummary::of_opt(e2e.get(&s).and_then(|l| l.get(Kind::E2e)));
        Delivery {
            readers: end.readers.len(),
            dead: end.readers.iter().filter(|r| r.outcome.is_none()).count(),
            loss_allowed: allow_loss,
            e2e: KindReport {
                trades: of(Stream::Trades),
                book: of(Stream::Book),
                all: LatencySummary::of_opt(all.get(Kind::E2e)),
            },
            written,
            impairment_lost: net_dropped
                * end.readers.iter().filter(|r| r.outcome.is_some()).count() as u64,
            streams,
            per_reader,
            garbage_lines: end.garbage_lines,
        }
    }
}

impl Observer for RunAccumulator {
    fn started(&mut self, _plan: &Plan, _start: &RunStart) {}

    fn interval(&mut self, report: &IntervalReport) {
        self.add(report);
    }
}

fn throughput(s: &SourceReport, secs: f64, peak: f64) -> StreamThroughput {
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let (actual, target) = (per_sec(s.writer.sent), per_sec(s.writer.due()));
    StreamThroughput {
        sent: s.writer.sent,
        target_rate: target,
        actual_rate: actual,
        peak_rate: peak,
        achievement_pct: if target > 0.0 {
            100.0 * actual / target
        } else {
            0.0
        },
        backlog: s.writer.backlog,
    }
}

fn degradation(series: &[Point]) -> Option<Degradation> {
    let measured: Vec<&Point> = series.iter().filter(|p| !p.warmup).collect();
    if measured.len() < 10 {
        return None;
    }
    let n = measured.len() / 10;
    let (first, last) = (&measured[..n], &measured[measured.len() - n..]);
    let p99 = |ps: &[&Point]| {
        ps.iter()
            .map(|p| p.trades.service.p99.max(p.book.service.p99))
            .max()
            .unwrap_or(0)
    };
    let rate = |ps: &[&Point]| ps.iter().map(|p| p.total_rate()).sum::<f64>() / ps.len() as f64;
    let rss = |ps: &[&Point]| ps.iter().map(|p| p.rss_mib).fold(0.0, f64::max);
    // Least-squares slope of RSS against time, over every measured point.
    let xs: Vec<f64> = measured
        .iter()
        .map(|p| (p.start_secs + p.secs / 2.0) / 3600.0)
        .collect();
    let ys: Vec<f64> = measured.iter().map(|p| p.rss_mib).collect();
    let (mx, my) = (
        xs.iter().sum::<f64>() / xs.len() as f64,
        ys.iter().sum::<f64>() / ys.len() as f64,
    );
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let span_secs = measured.last().map_or(0.0, |p| p.start_secs + p.secs)
        - measured.first().map_or(0.0, |p| p.start_secs);
    Some(Degradation {
        rss_slope_mib_per_hour: (span_secs >= MIN_GROWTH_SPAN_SECS && sxx > 0.0).then(|| sxy / sxx),
        span_secs,
        points_per_tenth: n,
        service_p99_first_ns: p99(first),
        service_p99_last_ns: p99(last),
        rate_first: rate(first),
        rate_last: rate(last),
        rss_first_mib: rss(first),
        rss_last_mib: rss(last),
    })
}

#[cfg(test)]
mod tests {
    use crate::report::end::RunEnd;
    use crate::report::{IntervalReport, ProcessUsage, TESTER_PROCESS};
    use crate::results::accumulate::RunAccumulator;

    /// The results of `secs` measured one-second intervals whose tester RSS is `rss(i)` bytes.
    fn growth(secs: u64, rss: impl Fn(u64) -> u64) -> Option<f64> {
        let mut plan = crate::results::testdata::sample_results(1).plan;
        plan.warmup_secs = 0;
        plan.duration_secs = secs;
        plan.point_secs = 1;
        let mut acc = RunAccumulator::new(&plan);
        for i in 0..secs {
            let mut r = IntervalReport::empty(i, 1_000_000_000);
            r.covered_ns = r.length_ns;
            r.processes.insert(
                TESTER_PROCESS.into(),
                ProcessUsage {
                    samples: 1,
                    wall_ns: 1_000_000_000,
                    rss_bytes: rss(i),
                    ..Default::default()
                },
            );
            acc.add(&r);
        }
        let end: RunEnd = crate::results::testdata::sample_end();
        acc.finish(&end, None, false)
            .degradation
            .expect("at least ten points")
            .rss_slope_mib_per_hour
    }

    #[test]
    fn growth_is_judged_over_ten_minutes_only_and_keeps_its_sign() {
        const MIB: u64 = 1 << 20;
        // A minute of a flat RSS with a page of noise: no judgement, not thousands of MiB/h.
        assert_eq!(growth(60, |i| 40 * MIB + (i % 2) * 4096), None);
        // Twenty minutes shrinking by 1 MiB a minute: -60 MiB/h, not 0.
        let slope = growth(1200, |i| 100 * MIB - i * MIB / 60).expect("judged");
        assert!((slope + 60.0).abs() < 0.5, "{slope}");
    }
}

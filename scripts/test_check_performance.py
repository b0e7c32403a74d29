"""Tests of check-performance.py (standard library only).

Run from the repository root:  python3 -m unittest discover -s scripts -p 'test_*.py'

testdata/results.json is the --json-output of a real short run
(`load-tester -d 2 --warmup-secs 0 -e 1 -t 2000 -o 1000 --json-output ...`); regenerate it the same
way when the results schema changes.
"""

import contextlib
import copy
import importlib.util
import io
import json
import os
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("check_performance", os.path.join(HERE, "check-performance.py"))
cp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cp)

with open(os.path.join(HERE, "testdata", "results.json"), encoding="utf-8") as f:
    FIXTURE = json.load(f)


def passing(results=None):
    """The fixture made a clean, passing run: every check passed, outcome passed."""
    r = copy.deepcopy(results or FIXTURE)
    r["verdict"]["outcome"] = "passed"
    r["verdict"]["invalid_reason"] = None
    for c in r["verdict"]["checks"]:
        c["passed"] = True
    r["throughput"]["total"]["actual_rate"] = 50_000.0
    r["throughput"]["total"]["achievement_pct"] = 100.0
    r["resources"]["cpu_avg_pct"] = 10.0
    r["resources"]["rss_peak_mib"] = 20.0
    r["errors"]["error_rate_pct"] = 0.0
    return r


class Run:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err


class CheckPerformanceTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write(self, name, content):
        path = os.path.join(self.dir.name, name)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(path, mode) as f:
            f.write(content if isinstance(content, (str, bytes)) else json.dumps(content))
        return path

    def check(self, results, targets=None):
        path = results if isinstance(results, str) else self.write("r.json", results)
        argv = [path] + (["--targets", self.write("t.toml", targets)] if targets is not None else [])
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cp.main(argv)
        return Run(code, out.getvalue(), err.getvalue())

    def assert_unusable(self, run, words):
        self.assertEqual(run.code, 2, run.out + run.err)
        lines = run.err.strip().splitlines()
        self.assertEqual(len(lines), 1, run.err)
        self.assertTrue(lines[0].startswith("error: "), lines[0])
        self.assertIn(words, lines[0])

    # -- the decoder agrees with the Rust implementation that wrote the summaries

    def test_decoder_reproduces_every_stored_summary(self):
        summaries = []
        for kind in ("service", "response", "lag"):
            for stream in ("trades", "book", "all"):
                summaries.append(FIXTURE["latency"][kind][stream])
        for source in FIXTURE["sources"]:
            summaries += [source["service"], source["response"], source["lag"]]
        if FIXTURE.get("delivery"):
            summaries += [FIXTURE["delivery"]["e2e"][s] for s in ("trades", "book", "all")]
        self.assertGreater(len(summaries), 9)
        for s in summaries:
            h = cp.decode_histogram(s["histogram"])
            self.assertEqual(h.total, s["count"])
            for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999), ("p9999", 0.9999)):
                self.assertEqual(h.value_at_quantile(q), s[key], key)
            self.assertEqual(h.max(), s["max"])
        self.assertGreater(cp.decode_histogram(FIXTURE["latency"]["service"]["all"]["histogram"]).total, 100)

    def test_decoder_refuses_garbage(self):
        for text in ("", "not base64!", "aGVsbG8gd29ybGQ=", FIXTURE["latency"]["service"]["all"]["histogram"][:40]):
            with self.assertRaises(ValueError):
                cp.decode_histogram(text)

    # -- outcomes

    def test_every_target_met_exits_0_and_prints_the_table(self):
        run = self.check(passing())
        self.assertEqual(run.code, 0, run.out + run.err)
        for name in ("Throughput", "Write Latency P99", "Memory Usage (peak RSS)", "Error Rate"):
            self.assertIn(name, run.out)
        self.assertIn("PASSED", run.out)
        self.assertNotIn("MISSED", run.out)

    def test_a_missed_target_exits_1_and_names_it(self):
        run = self.check(passing(), "write_p50_ns = 1\n")
        self.assertEqual(run.code, 1, run.out + run.err)
        self.assertIn("MISSED", run.out)
        self.assertIn("Write Latency P50", run.out.splitlines()[-1])
        r = passing()
        # The CPU target judges the time spent working, not the spinning for send times.
        r["resources"]["cpu_avg_pct"] = 75.0
        self.assertEqual(self.check(r).code, 0)
        r["resources"]["cpu_working_avg_pct"] = 75.0
        run = self.check(r)
        self.assertEqual(run.code, 1)
        self.assertIn("CPU Usage", run.out.splitlines()[-1])

    def test_targets_file_overrides_only_what_it_names(self):
        r = passing()
        r["throughput"]["total"]["actual_rate"] = 5_000.0
        self.assertEqual(self.check(r).code, 1)
        self.assertEqual(self.check(r, "min_throughput = 1000\n").code, 0)

    def test_endurance_targets_need_a_long_run(self):
        r = passing()
        r["degradation"] = None
        run = self.check(r, "max_rss_growth_mib_per_hour = 1.0\n")
        self.assertEqual(run.code, 0, run.out)
        self.assertNotIn("Memory Growth", run.out)
        r["degradation"] = {
            "points_per_tenth": 6, "service_p99_first_ns": 1000, "service_p99_last_ns": 3000,
            "rate_first": 1000.0, "rate_last": 990.0, "rss_first_mib": 20.0, "rss_last_mib": 40.0,
            "rss_slope_mib_per_hour": 12.5, "span_secs": 3600.0,
        }
        run = self.check(r, "max_rss_growth_mib_per_hour = 10\nmax_p99_degradation_pct = 300\nmax_throughput_degradation_pct = 0.5\n")
        self.assertEqual(run.code, 1, run.out)
        last = run.out.splitlines()[-1]
        self.assertIn("Memory Growth (RSS slope)", last)
        self.assertIn("Throughput Degradation", last)
        self.assertNotIn("Write P99 Degradation", last)  # +200% is within 300%
        # Over too short a span the slope is null and growth is not judged.
        r["degradation"]["rss_slope_mib_per_hour"] = None
        run = self.check(r, "max_rss_growth_mib_per_hour = 10\n")
        self.assertEqual(run.code, 0, run.out)
        self.assertNotIn("Memory Growth", run.out)

    def test_checks_of_the_run_itself_are_kept(self):
        r = passing()
        r["verdict"]["checks"].append(
            {"name": "Records Lost", "target": "= 0", "measured": 12.0, "unit": "records", "passed": False}
        )
        run = self.check(r)
        self.assertEqual(run.code, 1)
        self.assertIn("Records Lost *", run.out)

    def test_invalid_run_exits_3_with_its_reason(self):
        r = passing()
        r["verdict"]["outcome"] = "invalid"
        r["verdict"]["invalid_reason"] = "the generator fell behind"
        run = self.check(r)
        self.assertEqual(run.code, 3)
        self.assertIn("the generator fell behind", run.out)

    def test_hand_edited_summary_cannot_make_a_run_pass(self):
        r = passing()
        true_p50 = r["latency"]["service"]["all"]["p50"]
        r["latency"]["service"]["all"]["p50"] = 0
        run = self.check(r, f"write_p50_ns = {true_p50}\n")
        self.assertEqual(run.code, 1, run.out)
        self.assertIn("disagrees with the stored histogram", run.err)
        self.assertIn(f"{true_p50:,}", run.out)

    # -- unusable input: exit 2, one line, no traceback

    def test_bad_results_files(self):
        text = json.dumps(passing())
        future = passing()
        future["schema_version"] = cp.SCHEMA_VERSION + 1
        other = passing()
        other["tool"]["name"] = "k6"
        missing = passing()
        del missing["resources"]
        bad_hist = passing()
        bad_hist["latency"]["service"]["all"]["histogram"] = "SGVsbG8="
        for content, words in (
            (text[: len(text) // 2], "truncated"),
            ("", "empty"),
            ("[1, 2, 3]", "not a results file"),
            ({"metrics": {}}, "no schema_version"),
            (future, "schema_version"),
            (other, "written by k6"),
            (missing, "resources"),
            (bad_hist, "does not decode"),
            (b"\xff\xfe\x00garbage", "not JSON"),
            ("{not json", "not JSON"),
        ):
            with self.subTest(words=words):
                self.assert_unusable(self.check(self.write("bad.json", content)), words)
        self.assert_unusable(self.check(os.path.join(self.dir.name, "absent.json")), "cannot read")

    def test_bad_targets_files(self):
        for content, words in (
            ("bogus = 1\n", "unknown key 'bogus'"),
            ('write_p99_ns = "fast"\n', "not a number"),
            ("max_cpu_pct = -1\n", "must be a finite number"),
            ("write_p99_ns = 1.5\n", "whole number"),
            ("write_p99_ns = \n", "--targets"),
        ):
            with self.subTest(content=content):
                self.assert_unusable(self.check(passing(), content), words)


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""Checks a results file of the AlphaPulse load tester against performance targets.

Usage:
    scripts/check-performance.py RESULTS.json [--targets FILE]

RESULTS.json is what `load-tester --json-output RESULTS.json` wrote. FILE is the TOML file of
performance targets that `load-tester --targets` reads (any key it omits keeps its default). The
script prints a table of every target and exits:

    0  every target met
    1  a target missed
    2  unusable input: the results file or the targets file cannot be read or is not valid
    3  the run is INVALID: the tester itself could not keep its schedule, so its figures do not
       measure the bus (the run's own verdict says so)

The write-latency percentiles are computed from the HdrHistogram stored in the results file (its
V2 compressed serialization, decoded here with the standard library), not taken from the summary
numbers next to it: a hand-edited summary is reported and cannot make a run pass. Checks of the
run's verdict that no target governs (for instance the readers' losses and integrity) are shown
and judged as the run recorded them.

Standard library only; Python 3.11 or newer (tomllib).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import struct
import sys
import zlib

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = None

# The results schema this script reads (load-tester's results::SCHEMA_VERSION).
SCHEMA_VERSION = 2
TOOL_NAME = "alphapulse-load-tester"

# load-tester's targets::Targets::default(), the original design's table.
DEFAULT_TARGETS = {
    "min_throughput": 10_000.0,
    "min_achievement_pct": 95.0,
    "write_p50_ns": 100_000,
    "write_p99_ns": 1_000_000,
    "write_p999_ns": 10_000_000,
    "max_cpu_pct": 50.0,
    "max_memory_mib": 500.0,
    "max_error_rate_pct": 0.01,
    # Endurance targets, judged only when set and the run has at least 10 measured points.
    "max_rss_growth_mib_per_hour": None,
    "max_p99_degradation_pct": None,
    "max_throughput_degradation_pct": None,
}
# Names of the verdict's checks that the endurance targets govern: judged here or not at all.
ENDURANCE_CHECKS = {
    "Memory Growth (RSS slope)",
    "Write P99 Degradation (last vs first tenth)",
    "Throughput Degradation (last vs first tenth)",
}
INTEGER_TARGETS = {"write_p50_ns", "write_p99_ns", "write_p999_ns"}

EXIT_PASSED, EXIT_MISSED, EXIT_UNUSABLE, EXIT_INVALID = 0, 1, 2, 3


class Unusable(Exception):
    """Input that cannot be used: one line saying why."""


# --- HdrHistogram V2 (compressed) deserialization -------------------------------------------

V2_COOKIE = 0x1C849303 | 0x10
V2_COMPRESSED_COOKIE = 0x1C849304 | 0x10


class Histogram:
    """The counts of a decoded HdrHistogram, with the value arithmetic of the reference
    implementation (values are integers, nanoseconds here)."""

    def __init__(self, lowest: int, highest: int, digits: int, counts: dict[int, int]):
        if lowest < 1 or digits > 5 or highest < 2 * lowest:
            raise ValueError(f"implausible parameters: lowest {lowest}, highest {highest}, digits {digits}")
        largest_single_unit = 2 * 10**digits
        self.unit_magnitude = int(math.floor(math.log2(lowest)))
        sub_bucket_count_magnitude = int(math.ceil(math.log2(largest_single_unit)))
        self.sub_bucket_half_count_magnitude = max(sub_bucket_count_magnitude, 1) - 1
        self.sub_bucket_count = 2 ** (self.sub_bucket_half_count_magnitude + 1)
        self.sub_bucket_half_count = self.sub_bucket_count // 2
        self.counts = counts
        self.total = sum(counts.values())

    def _bucket(self, index: int) -> tuple[int, int]:
        bucket = (index >> self.sub_bucket_half_count_magnitude) - 1
        sub = (index & (self.sub_bucket_half_count - 1)) + self.sub_bucket_half_count
        if bucket < 0:
            sub -= self.sub_bucket_half_count
            bucket = 0
        return bucket, sub

    def lowest_equivalent(self, index: int) -> int:
        bucket, sub = self._bucket(index)
        return sub << (bucket + self.unit_magnitude)

    def highest_equivalent(self, index: int) -> int:
        bucket, sub = self._bucket(index)
        # Sub-bucket indexes at or above the half count of a bucket past the first one are
        # represented in that bucket's upper half; the range size is the bucket's unit.
        return (sub << (bucket + self.unit_magnitude)) + (1 << (bucket + self.unit_magnitude)) - 1

    def value_at_quantile(self, q: float) -> int:
        if self.total == 0:
            return 0
        q = min(q, 1.0)
        target = max(math.ceil(q * self.total), 1)
        running = 0
        for index in sorted(self.counts):
            running += self.counts[index]
            if running >= target:
                return self.lowest_equivalent(index) if q == 0.0 else self.highest_equivalent(index)
        return 0

    def max(self) -> int:
        if self.total == 0:
            return 0
        return self.highest_equivalent(max(self.counts))


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        if pos >= len(buf):
            raise ValueError("truncated counts")
        b = buf[pos]
        pos += 1
        if i == 8:
            return value | (b << 56), pos
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, pos
    return value, pos


def decode_histogram(text: str) -> Histogram:
    """Decodes HdrHistogram's V2 (optionally deflate-compressed) serialization, base64."""
    try:
        data = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not base64: {e}") from None
    if len(data) < 8:
        raise ValueError("too short")
    (cookie,) = struct.unpack_from(">I", data, 0)
    if cookie == V2_COMPRESSED_COOKIE:
        (length,) = struct.unpack_from(">I", data, 4)
        try:
            data = zlib.decompress(data[8 : 8 + length])
        except zlib.error as e:
            raise ValueError(f"does not inflate: {e}") from None
        (cookie,) = struct.unpack_from(">I", data, 0)
    if cookie != V2_COOKIE or len(data) < 40:
        raise ValueError("not an HdrHistogram V2 serialization")
    length, offset, digits, lowest, highest, ratio = struct.unpack_from(">IIIQQd", data, 4)
    if offset != 0 or ratio != 1.0:
        raise ValueError("unsupported normalizing offset or conversion ratio")
    payload = data[40 : 40 + length]
    if len(payload) != length:
        raise ValueError("truncated counts")
    counts: dict[int, int] = {}
    pos = index = 0
    while pos < len(payload):
        raw, pos = _varint(payload, pos)
        n = (raw >> 1) ^ -(raw & 1)  # zig-zag
        if n < 0:
            index += -n
        else:
            if n:
                counts[index] = n
            index += 1
    return Histogram(lowest, highest, digits, counts)


# --- Input ---------------------------------------------------------------------------------


def load_targets(path: str | None) -> dict:
    targets = dict(DEFAULT_TARGETS)
    if path is None:
        return targets
    if tomllib is None:
        raise Unusable("--targets needs Python 3.11 or newer (tomllib)")
    try:
        with open(path, "rb") as f:
            given = tomllib.load(f)
    except OSError as e:
        raise Unusable(f"--targets {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise Unusable(f"--targets {path}: {e}") from None
    for key, value in given.items():
        if key not in DEFAULT_TARGETS:
            raise Unusable(f"--targets {path}: unknown key {key!r}; known keys: {', '.join(DEFAULT_TARGETS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Unusable(f"--targets {path}: {key} = {value!r} is not a number")
        if key in INTEGER_TARGETS and not isinstance(value, int):
            raise Unusable(f"--targets {path}: {key} = {value!r} must be a whole number of nanoseconds")
        if not math.isfinite(value) or value < 0:
            raise Unusable(f"--targets {path}: {key} = {value} must be a finite number >= 0")
        targets[key] = value
    return targets


def dig(obj, *keys):
    """obj[k1][k2]..., or Unusable naming the missing field."""
    for i, k in enumerate(keys):
        if not isinstance(obj, dict) or k not in obj:
            raise Unusable(f"field {'.'.join(keys[: i + 1])} is missing: not a complete results file")
        obj = obj[k]
    return obj


def number(obj, *keys) -> float:
    v = dig(obj, *keys)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise Unusable(f"field {'.'.join(keys)} is {v!r}, not a number")
    return v


def load_results(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise Unusable(f"{path}: cannot read: {e.strerror or e}") from None
    if not raw.strip():
        raise Unusable(f"{path}: is empty: not a results file")
    try:
        results = json.loads(raw)
    except UnicodeDecodeError:
        raise Unusable(f"{path}: is not JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        # A string that never ends ran into the end of the file as well.
        if e.pos >= len(raw.rstrip()) or e.msg.startswith("Unterminated string"):
            raise Unusable(f"{path}: is truncated (the JSON ends early at line {e.lineno}); was the run or the copy cut short?") from None
        raise Unusable(f"{path}: is not JSON (line {e.lineno} column {e.colno}: {e.msg})") from None
    if not isinstance(results, dict):
        raise Unusable(f"{path}: is JSON but not a results file of {TOOL_NAME}")
    tool = results.get("tool", {}).get("name") if isinstance(results.get("tool"), dict) else None
    if "schema_version" not in results:
        raise Unusable(f"{path}: is JSON but not a results file of {TOOL_NAME} (no schema_version)")
    if tool is not None and tool != TOOL_NAME:
        raise Unusable(f"{path}: was written by {tool}, not by {TOOL_NAME}")
    if results["schema_version"] != SCHEMA_VERSION:
        raise Unusable(
            f"{path}: has schema_version {results['schema_version']!r}; this script reads schema_version {SCHEMA_VERSION} only"
        )
    return results


# --- Checks --------------------------------------------------------------------------------


def checks(results: dict, targets: dict, warnings: list[str]) -> list[dict]:
    service = dig(results, "latency", "service", "all")
    try:
        h = decode_histogram(dig(service, "histogram"))
    except ValueError as e:
        raise Unusable(f"latency.service.all.histogram does not decode ({e}): the file is damaged or was edited") from None
    measured = {"p50": h.value_at_quantile(0.5), "p99": h.value_at_quantile(0.99), "p999": h.value_at_quantile(0.999)}
    stored = {k: service.get(k) for k in measured}
    stored["count"] = service.get("count")
    stored["max"] = service.get("max")
    derived = dict(measured, count=h.total, max=h.max())
    differs = [f"{k} {stored[k]} (histogram: {derived[k]})" for k in derived if stored[k] != derived[k]]
    if differs:
        warnings.append(
            "latency.service.all: the summary disagrees with the stored histogram (" + ", ".join(differs)
            + "): edited by hand? The checks use the histogram"
        )

    def plain(v) -> str:
        # As load-tester prints a target: 1000000, 0.01, 95.
        return str(int(v)) if float(v).is_integer() else repr(float(v))

    def at_least(name, value, minimum, unit):
        return {"name": name, "measured": value, "target": f">= {plain(minimum)}", "unit": unit, "passed": value >= minimum}

    def below(name, value, maximum, unit):
        return {"name": name, "measured": value, "target": f"< {plain(maximum)}", "unit": unit, "passed": value < maximum}

    t = targets
    out = [
        at_least("Throughput", number(results, "throughput", "total", "actual_rate"), t["min_throughput"], "msgs/s"),
        at_least("Achievement", number(results, "throughput", "total", "achievement_pct"), t["min_achievement_pct"], "%"),
        below("Write Latency P50", measured["p50"], t["write_p50_ns"], "ns"),
        below("Write Latency P99", measured["p99"], t["write_p99_ns"], "ns"),
        below("Write Latency P99.9", measured["p999"], t["write_p999_ns"], "ns"),
        below("CPU Usage (avg working, % of one core)", number(results, "resources", "cpu_working_avg_pct"), t["max_cpu_pct"], "%"),
        below("Memory Usage (peak RSS)", number(results, "resources", "rss_peak_mib"), t["max_memory_mib"], "MiB"),
        below("Error Rate", number(results, "errors", "error_rate_pct"), max(t["max_error_rate_pct"], sys.float_info.min), "%"),
    ]
    d = results.get("degradation")
    if isinstance(d, dict):
        # The slope is null over a span too short to judge growth (results-schema.md).
        if t["max_rss_growth_mib_per_hour"] is not None and d.get("rss_slope_mib_per_hour") is not None:
            out.append(below("Memory Growth (RSS slope)", number(d, "rss_slope_mib_per_hour"), t["max_rss_growth_mib_per_hour"], "MiB/h"))
        if t["max_p99_degradation_pct"] is not None:
            first, last = number(d, "service_p99_first_ns"), number(d, "service_p99_last_ns")
            change = 100.0 * (last - first) / first if first > 0 else 0.0
            out.append(below("Write P99 Degradation (last vs first tenth)", change, t["max_p99_degradation_pct"], "%"))
        if t["max_throughput_degradation_pct"] is not None:
            first, last = number(d, "rate_first"), number(d, "rate_last")
            drop = 100.0 * (first - last) / first if first > 0 else 0.0
            out.append(below("Throughput Degradation (last vs first tenth)", drop, t["max_throughput_degradation_pct"], "%"))
    # Checks of the run's verdict that no target governs, as the run judged them.
    names = {c["name"] for c in out} | ENDURANCE_CHECKS
    for c in dig(results, "verdict", "checks"):
        if isinstance(c, dict) and c.get("name") not in names:
            out.append(
                {
                    "name": str(c.get("name")),
                    "measured": c.get("measured"),
                    "target": str(c.get("target")),
                    "unit": str(c.get("unit", "")),
                    "passed": c.get("passed") is True,
                    "from_run": True,
                }
            )
    return out


def fmt(value, unit: str) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    if unit == "%":
        return f"{value:.3f}"
    if unit == "MiB":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def table(rows: list[dict]) -> str:
    head = ("Target", "Measured", "Target", "Unit", "Status")
    body = [
        (
            r["name"] + (" *" if r.get("from_run") else ""),
            fmt(r["measured"], r["unit"]),
            r["target"],
            r["unit"],
            "met" if r["passed"] else "MISSED",
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = []
    for n, row in enumerate([head, *body]):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3].ljust(widths[3]), row[4]]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check load-tester results against performance targets.",
        epilog="Exit status: 0 all targets met, 1 a target missed, 2 unusable input, 3 run invalid.",
    )
    parser.add_argument("results", metavar="RESULTS.json", help="the --json-output of a load-tester run")
    parser.add_argument("--targets", metavar="FILE", help="TOML file of performance targets (as load-tester --targets)")
    args = parser.parse_args(argv)
    warnings: list[str] = []
    try:
        targets = load_targets(args.targets)
        results = load_results(args.results)
        rows = checks(results, targets, warnings)
        verdict = dig(results, "verdict")
    except Unusable as e:
        msg = str(e)
        if not msg.startswith(args.results) and not msg.startswith("--targets"):
            msg = f"{args.results}: {msg}"
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_UNUSABLE
    plan = results.get("plan", {})
    exchanges = plan.get("exchanges", []) if isinstance(plan, dict) else []
    print(
        f"{args.results}: {len(exchanges)} exchange(s), "
        f"{number(results, 'measured_secs'):.1f} s measured, {TOOL_NAME} {results.get('tool', {}).get('version', '?')}"
    )
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(table(rows))
    if any(r.get("from_run") for r in rows):
        print("* judged by the run itself (no target of the targets file governs it)")
    if results.get("interrupted"):
        print(f"note: the run was interrupted by {results['interrupted']}")
    missed = [r["name"] for r in rows if not r["passed"]]
    if verdict.get("outcome") == "invalid":
        print(f"INVALID: {verdict.get('invalid_reason') or 'the run could not be measured'}")
        return EXIT_INVALID
    if missed:
        print(f"FAILED: {len(missed)} target(s) missed: {', '.join(missed)}")
        return EXIT_MISSED
    print(f"PASSED: all {len(rows)} targets met")
    return EXIT_PASSED


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""An AlphaPulse bus reader in pure Python, written only from docs/bus-format.md.

It attaches to a run directory (the one holding manifest.json), opens and validates every ring
the manifest lists (§11), and reads every record without registering (§12.3: plain Python has
no compare-and-swap, so it stays anonymous and invisible to backpressure). For each ring it
checks sequence continuity and the checksum of every record (§5), counts what it received and
what the writer's laps made it lose (§6.5), and stops once every writer has closed (or died) and
every ring is drained (§6.7, §8). It then prints one JSON summary on stdout.

Usage:
    apbus_reader.py RUN_DIR [--start oldest|latest] [--max-secs S] [--stale-ms MS]
    apbus_reader.py --self-test      # checks the checksum against the document's examples

Exit status: 0 every record intact and nothing lost; 1 records lost or invalid (bad checksum,
out of order, bad fields); 2 the directory is not a usable run (an "error:" line on stderr).

Standard library only: os, mmap, struct, json, fcntl, time, sys, argparse.
"""

import fcntl
import json
import mmap
import os
import struct
import sys
import time

# §13 constants.
MAGIC = 0x474E525355425041
FORMAT_VERSION = 1
MANIFEST_VERSION = 1
HEADER_SIZE = 4096
MAX_READERS = 32
MIN_CAPACITY, MAX_CAPACITY = 2, 1 << 30
BUSY = 1 << 63
WRITER_OPEN, WRITER_CLOSED = 1, 2
MANIFEST_MAX = 16 << 20
RECORD_SIZES = {1: 64, 2: 256}  # record_type -> record_size (§4.2)
STREAMS = {1: "trades", 2: "book"}
MODES = {0: "overwrite", 1: "backpressure"}

# Header offsets (§3.3, §3.4).
OFF_MAGIC, OFF_VERSION, OFF_CAPACITY, OFF_MAX_READERS = 0, 8, 24, 32
OFF_EPOCH, OFF_WRITER_PID = 40, 48
OFF_WRITER_HEARTBEAT, OFF_WRITER_STATE, OFF_WRITE_CURSOR = 64, 72, 128

# §5 checksum.
CHECKSUM_K, CHECKSUM_SEED, M64 = 0x9E3779B97F4A7C15, 0xA17A90175E5B0001, (1 << 64) - 1

# How long a ring listed in the manifest may still be being created (§10.2).
CREATION_GRACE_S = 2.0
# How often an idle reader asks about the writers (§6.7: when idle, not per poll).
STATUS_EVERY_S = 0.02


class RunError(Exception):
    """The run directory or a ring is unusable; the message names the file and the problem."""


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def checksum(record):
    """§5.1: fold words 2 .. W-2 of the record (its bytes as stored)."""
    words = struct.unpack("<%dQ" % (len(record) // 8), record)
    h = CHECKSUM_SEED
    for w in words[2:-1]:
        h = ((h ^ w) * CHECKSUM_K) & M64
        h = ((h << 29) | (h >> 35)) & M64
    return h ^ (h >> 32)


def open_nofollow(path, flags=os.O_RDONLY):
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def read_manifest(run_dir):
    """§10.3 and §12.1 step 2."""
    path = os.path.join(run_dir, "manifest.json")
    try:
        fd = open_nofollow(path)
    except FileNotFoundError:
        raise RunError(f"{path}: no manifest: is {run_dir} a run directory?") from None
    except OSError as e:
        raise RunError(f"{path}: cannot open the manifest: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:
            raise RunError(f"{path}: not a regular file")
        if st.st_size > MANIFEST_MAX:
            raise RunError(f"{path}: {st.st_size} bytes, larger than a manifest may be")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MANIFEST_MAX + 1)
    finally:
        os.close(fd)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise RunError(f"{path}: invalid manifest: not UTF-8 JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise RunError(f"{path}: invalid manifest: not a JSON object")
    if manifest.get("version") != MANIFEST_VERSION:
        raise RunError(
            f"{path}: invalid manifest: version {manifest.get('version')!r}; "
            f"this reader reads version {MANIFEST_VERSION}"
        )
    rings = manifest.get("rings")
    exchanges = manifest.get("exchanges")
    if not isinstance(rings, list) or not isinstance(exchanges, list):
        raise RunError(f"{path}: invalid manifest: `rings` and `exchanges` must be arrays")
    for r in rings:
        ok = (
            isinstance(r, dict)
            and isinstance(r.get("file"), str)
            and valid_name(r["file"])
            and r.get("stream") in ("trades", "book")
            and RECORD_SIZES.get(r.get("record_type")) == r.get("record_size")
            and STREAMS[r["record_type"]] == r["stream"]
            and isinstance(r.get("exchange_id"), int)
            and 0 <= r["exchange_id"] < len(exchanges)
            and isinstance(r.get("capacity"), int)
        )
        if not ok:
            raise RunError(f"{path}: invalid manifest: bad ring entry {json.dumps(r)}")
    if not rings:
        raise RunError(f"{path}: the run lists no ring")
    return manifest


def valid_name(name):
    """§10.1: 1-100 characters from A-Z a-z 0-9 . - _, not . or .."""
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_")
    return 1 <= len(name) <= 100 and name not in (".", "..") and set(name) <= allowed


class Ring:
    """One ring, opened and validated per §11, read anonymously per §6."""

    def __init__(self, run_dir, entry):
        self.file = entry["file"]
        self.path = os.path.join(run_dir, self.file)
        self.exchange_id = entry["exchange_id"]
        self.want_type = entry["record_type"]
        self.stream = entry["stream"]
        self.fd = None
        self.mm = None
        self.w = None
        deadline = time.monotonic() + CREATION_GRACE_S
        while True:
            try:
                self._open(entry)
                break
            except _Retry as e:
                # Missing, short or without magic: possibly still being created (§10.2).
                self.close()
                if time.monotonic() >= deadline:
                    raise RunError(f"{self.path}: {e}") from None
                time.sleep(0.02)
        self.received = 0
        self.lost = 0
        self.torn = 0
        self.bad_checksums = 0
        self.bad_fields = 0
        self.out_of_order = 0
        self.last_sequence = 0
        self.first_record = None
        self.last_record = None
        self.writer = "alive"
        self.finished = False

    def _open(self, entry):
        # §11 steps 1-4.
        try:
            self.fd = open_nofollow(self.path)
        except FileNotFoundError:
            raise _Retry("ring file missing") from None
        except OSError as e:
            raise RunError(f"{self.path}: cannot open the ring: {e.strerror}") from None
        st = os.fstat(self.fd)
        if st.st_mode & 0o170000 != 0o100000:
            raise RunError(f"{self.path}: not a regular file")
        if st.st_size < HEADER_SIZE:
            raise _Retry(f"{st.st_size} bytes: truncated (the header alone is {HEADER_SIZE})")
        self.mm = mmap.mmap(self.fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ)
        # Shared 8-byte words are only ever loaded through this view: one aligned load each.
        self.w = memoryview(self.mm).cast("Q")
        # Step 5: magic is stored last by the creator; the rest of line 0 is then complete.
        if self.w[OFF_MAGIC // 8] != MAGIC:
            raise _Retry("bad magic: not a ring, or its creation is unfinished")
        # Line 0 never changes after creation: parsing it field by field is fine.
        version, rtype, rsize, hsize = struct.unpack_from("<IIII", self.mm, OFF_VERSION)
        (capacity,) = struct.unpack_from("<Q", self.mm, OFF_CAPACITY)
        max_readers, mode = struct.unpack_from("<II", self.mm, OFF_MAX_READERS)
        # Steps 6-12.
        if version != FORMAT_VERSION:
            raise RunError(
                f"{self.path}: ring format version {version}; "
                f"this reader reads version {FORMAT_VERSION} only"
            )
        if rtype != self.want_type:
            raise RunError(
                f"{self.path}: record type {rtype}, the manifest says {self.want_type}"
            )
        if RECORD_SIZES.get(rtype) != rsize:
            raise RunError(f"{self.path}: record size {rsize} for record type {rtype}")
        if hsize != HEADER_SIZE or max_readers != MAX_READERS:
            raise RunError(
                f"{self.path}: header size {hsize} / {max_readers} reader slots; "
                f"expected {HEADER_SIZE} / {MAX_READERS}"
            )
        if not MIN_CAPACITY <= capacity <= MAX_CAPACITY or capacity & (capacity - 1):
            raise RunError(f"{self.path}: capacity {capacity} is not a power of two in range")
        if mode not in MODES:
            raise RunError(f"{self.path}: unknown writer mode {mode}")
        length = HEADER_SIZE + capacity * rsize
        if st.st_size != length or os.fstat(self.fd).st_size != st.st_size:
            raise RunError(
                f"{self.path}: length mismatch: {st.st_size} bytes, "
                f"the header implies {length}"
            )
        # Step 14 (recommended): the manifest agrees with the header.
        if entry["capacity"] != capacity or entry.get("mode", MODES[mode]) != MODES[mode]:
            raise RunError(f"{self.path}: the manifest's geometry differs from the header's")
        # Step 13: geometry kept privately, never re-read.
        self.capacity = capacity
        self.mask = capacity - 1
        self.rsize = rsize
        self.words = rsize // 8
        self.mode = MODES[mode]
        (self.epoch,) = struct.unpack_from("<Q", self.mm, OFF_EPOCH)
        self.ident = (st.st_dev, st.st_ino)

    def close(self):
        if self.w is not None:
            self.w.release()
            self.w = None
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def cursor(self):
        return self.w[OFF_WRITE_CURSOR // 8]

    def start(self, oldest):
        """§6.6."""
        c = self.cursor()
        self.next = (max(c - self.capacity, 0) + 1) if oldest else c + 1
        self.first = self.next

    def poll(self):
        """§6.2/§6.4: returns 'record', 'empty' or 'lost'."""
        e = self.next
        off = HEADER_SIZE + (e & self.mask) * self.rsize
        wi = off // 8
        before = self.w[wi]
        if before != e:
            found = before & ~BUSY
            if found <= e:
                return "empty"
            self._skip(found)
            return "lost"
        copy = self.mm[off : off + self.rsize]  # one private copy (x86-64: no fence needed)
        after = self.w[wi]
        if after != before:
            self.torn += 1
            self._skip(after & ~BUSY)
            return "lost"
        self.next = e + 1
        self._check(e, copy)
        return "record"

    def _skip(self, found):
        """§6.5: exact loss accounting."""
        published = max(self.cursor(), found)
        resume = max(
            min(max(published - self.capacity, 0) + 1 + self.capacity // 16, published),
            self.next + 1,
        )
        self.lost += resume - self.next
        self.next = resume

    def _check(self, e, rec):
        self.received += 1
        words = struct.unpack("<%dQ" % self.words, rec)
        # Sequence continuity: every sequence after the start was either received or counted
        # lost, in order, so this record must follow the last one (or the last loss) directly.
        seq = words[0]
        if seq != e or seq != self.first + self.received + self.lost - 1:
            self.out_of_order += 1
        stored = words[-1]
        if checksum(rec) != stored:
            self.bad_checksums += 1
        elif not self._fields_ok(rec):
            self.bad_fields += 1
        self.last_sequence = seq
        entry = {"sequence": seq, "checksum": stored}
        if self.first_record is None:
            self.first_record = entry
        self.last_record = entry

    def _fields_ok(self, rec):
        """§4: enumerations in range, the ring's own exchange."""
        if self.want_type == 1:
            (_, _, exchange, side, _, _, _, _, size, _, _) = struct.unpack("<QQHBBIQqqQQ", rec)
            return exchange == self.exchange_id and side in (1, 2) and size > 0
        (_, _, exchange, level_count, _, _, version, prev) = struct.unpack_from("<QQHBBIQQ", rec)
        if exchange != self.exchange_id or level_count > 8 or version != prev + 1:
            return False
        for k in range(level_count):
            _, _, side, action = struct.unpack_from("<qqBB6x", rec, 40 + 24 * k)
            if side not in (1, 2) or action not in (1, 2, 3):
                return False
        return True

    def writer_status(self, stale_after_ns):
        """§8, in the Rust reader's order."""
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) != self.ident:
                return "replaced"
        except FileNotFoundError:
            pass
        if self.w[OFF_WRITER_STATE // 8] == WRITER_CLOSED:
            return "closed"
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # the writer holds its lock
        else:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            return "dead"
        if now_ns() - self.w[OFF_WRITER_HEARTBEAT // 8] > stale_after_ns:
            return "stale"
        return "alive"

    def summary(self):
        return {
            "file": self.file,
            "exchange_id": self.exchange_id,
            "stream": self.stream,
            "capacity": self.capacity,
            "mode": self.mode,
            "writer": self.writer,
            "first_sequence": self.first,
            "next_sequence": self.next,
            "write_cursor": self.cursor(),
            "received": self.received,
            "lost": self.lost,
            "torn": self.torn,
            "bad_checksums": self.bad_checksums,
            "bad_fields": self.bad_fields,
            "out_of_order": self.out_of_order,
            "accounted": self.received + self.lost == self.next - self.first,
            "last_sequence": self.last_sequence,
            "first_record": self.first_record,
            "last_record": self.last_record,
        }


class _Retry(Exception):
    pass


def read_run(run_dir, oldest=True, max_secs=None, stale_ms=1000):
    manifest = read_manifest(run_dir)
    rings = []
    try:
        for entry in manifest["rings"]:
            rings.append(Ring(run_dir, entry))
        for r in rings:
            r.start(oldest)
        started = time.monotonic()
        next_status = 0.0
        stale_ns = stale_ms * 1_000_000
        while True:
            taken = 0
            for r in rings:
                if r.finished:
                    continue
                for _ in range(256):
                    if r.poll() == "empty":
                        break
                    taken += 1
            if taken:
                continue
            now = time.monotonic()
            if now >= next_status:
                next_status = now + STATUS_EVERY_S
                for r in rings:
                    if r.finished:
                        continue
                    r.writer = r.writer_status(stale_ns)
                    if r.writer in ("closed", "dead", "replaced"):
                        # Nothing more will be published: drain up to the final cursor.
                        cursor = r.cursor()
                        while r.next <= cursor:
                            if r.poll() == "empty":
                                # A published sequence that never shows up: stop, counted below.
                                break
                        r.finished = True
                if all(r.finished for r in rings):
                    died = any(r.writer in ("dead", "replaced") for r in rings)
                    ended = "writer died" if died else "writers closed"
                    break
                if max_secs is not None and now - started >= max_secs:
                    ended = "time limit"
                    break
            time.sleep(0.0005)
        out = {
            "run_dir": run_dir,
            "run_id": manifest.get("run_id"),
            "ended": ended,
            "rings": [r.summary() for r in rings],
        }
        totals = {}
        for s in out["rings"]:
            t = totals.setdefault(
                s["stream"],
                {"received": 0, "lost": 0, "bad_checksums": 0, "bad_fields": 0, "out_of_order": 0},
            )
            for k in t:
                t[k] += s[k]
        out["streams"] = totals
        return out
    finally:
        for r in rings:
            r.close()


def self_test():
    """§5.2's worked examples."""
    trade = struct.pack(
        "<QQHBBIQqqQQ", 7, 1_000_000_000, 1, 1, 0, 3, 42, 6_512_345_000_000, 1_500_000, 99, 0
    )
    expected_hex = (
        "0700000000000000 00ca9a3b00000000 0100010003000000 2a00000000000000 "
        "40a80246ec050000 60e3160000000000 6300000000000000 6240142aee80f906"
    )
    sealed = trade[:56] + struct.pack("<Q", checksum(trade))
    book = bytearray(256)
    struct.pack_into("<QQHBBIQQ", book, 0, 5, 2_000_000_000, 0, 2, 0, 1, 10, 9)
    struct.pack_into("<qqBB6x", book, 40, 6_512_300_000_000, 250_000_000, 1, 2)
    struct.pack_into("<qqBB6x", book, 64, 6_512_400_000_000, 0, 2, 3)
    cases = [
        ("trade example", checksum(trade), 0x06F980EE2A144062),
        ("trade example bytes", sealed.hex(), expected_hex.replace(" ", "")),
        ("zero trade", checksum(bytes(64)), 0x8426C4B55F223AE0),
        ("zero book update", checksum(bytes(256)), 0x3596A4984DF1E2F0),
        ("book update example", checksum(bytes(book)), 0xAF312D6EE41739DB),
    ]
    failed = [(n, got, want) for n, got, want in cases if got != want]
    for name, got, want in failed:
        print(f"self-test {name}: got {got}, want {want}", file=sys.stderr)
    print(json.dumps({"self_test": "failed" if failed else "passed", "cases": len(cases)}))
    return 1 if failed else 0


def parse_args(args):
    """The command line, parsed with the standard library's argparse: `--help` prints the
    usage and exits 0, a bad argument prints it and exits 2."""
    import argparse

    p = argparse.ArgumentParser(
        prog="apbus_reader.py",
        description="Read every ring of an AlphaPulse bus run and print a JSON summary.",
        epilog="Exit status: 0 every record intact and nothing lost; 1 records lost or invalid; "
        "2 not a usable run or a bad argument.",
    )
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                   help="the run directory (it holds manifest.json)")
    p.add_argument("--start", choices=("oldest", "latest"), default="oldest",
                   help="read from the oldest record still in each ring, or only new ones")
    p.add_argument("--max-secs", type=float, default=None, metavar="S",
                   help="stop after S seconds even if writers are still open")
    p.add_argument("--stale-ms", type=int, default=1000, metavar="MS",
                   help="a writer silent this long counts as stopped")
    p.add_argument("--self-test", action="store_true",
                   help="check the checksum against the examples of docs/bus-format.md")
    opts = p.parse_args(args)
    if not opts.self_test and opts.run_dir is None:
        p.error("RUN_DIR is required (or --self-test)")
    return opts


def main(argv):
    opts = parse_args(argv[1:])
    if opts.self_test:
        return self_test()
    run_dir = opts.run_dir
    opts = {"start": opts.start, "max_secs": opts.max_secs, "stale_ms": opts.stale_ms}
    try:
        out = read_run(
            run_dir,
            oldest=opts["start"] == "oldest",
            max_secs=opts["max_secs"],
            stale_ms=opts["stale_ms"],
        )
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    bad = any(
        r["lost"] or r["bad_checksums"] or r["bad_fields"] or r["out_of_order"]
        or not r["accounted"]
        for r in out["rings"]
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

//! One writer process and two reader processes on two rings (trades and book updates): every
//! record a reader returns is verified (sequence, checksum and every field), and for each reader
//! and stream `received + lost == written`.
//!
//! The processes are this test binary re-executed on this one test with a role in the
//! environment. Readers find the rings through the run's manifest and spin on them. The writer
//! writes the first half paced to its slowest reader, so that every record of it must arrive,
//! and the second half as fast as it can, so that readers are lapped and lose records: that is
//! allowed, miscounting them is not.
#![cfg(not(loom))]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alphapulse_bus::{
    BookUpdate, Manifest, ManifestRing, Poll, Reader, RecordType, RunDir, StartAt, Trade, Writer,
    WriterMode, WriterStatus, MANIFEST_VERSION,
};
use common::{child_base, child_role, report, Child, TestDir, TestRecord};

const NAME: &str = "one_writer_two_readers_every_record_verified";
/// Records per stream, in debug and release builds alike (a debug run takes a few seconds).
const PER_STREAM: u64 = 1_000_000;
/// The first half is written paced to the readers (none can be lapped), the second half as
/// fast as the writer can go (readers are lapped, lose records and see torn copies).
const PACED: u64 = PER_STREAM / 2;
const TAG: u16 = 3;
const LIMIT: Duration = Duration::from_secs(240);

fn fail(msg: String) -> ! {
    report(&format!("ERROR {msg}"));
    std::process::exit(1)
}

/// In the paced first half, waits until every reader of `w` is less than half a ring behind
/// `seq`, checked every 256 writes, so that no reader can be lapped there.
fn keep_readers_close<R: TestRecord>(w: &Writer<R>, seq: u64) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let readers = w.readers();
        if readers.len() != 2 {
            fail(format!("{} readers registered, expected 2", readers.len()));
        }
        let slowest = readers.iter().map(|r| r.cursor).min().unwrap();
        if seq - slowest < w.capacity() / 2 {
            return;
        }
        if Instant::now() > deadline {
            fail(format!("a reader is stuck at {slowest}"));
        }
        std::thread::yield_now();
    }
}

fn writer_role() {
    let mut run = RunDir::create(&child_base(), "run").unwrap();
    let mut trades = run
        .create_ring::<Trade>("x.trades", 1 << 12, WriterMode::Overwrite)
        .unwrap();
    let mut book = run
        .create_ring::<BookUpdate>("x.book", 1 << 10, WriterMode::Overwrite)
        .unwrap();
    let ring = |file: &str, ty: RecordType, capacity| ManifestRing {
        file: file.into(),
        exchange_id: TAG,
        stream: ty.stream_name().into(),
        record_type: ty as u32,
        record_size: ty.size() as u32,
        capacity,
        mode: WriterMode::Overwrite,
    };
    run.write_manifest(&Manifest {
        version: MANIFEST_VERSION,
        run_id: "run".into(),
        writer_pid: std::process::id(),
        exchanges: ["a", "b", "c", "x"].map(String::from).to_vec(), // TAG = 3 is "x"
        symbols: vec!["BTC-USD".into()],
        rings: vec![
            ring("x.trades", RecordType::Trade, 1 << 12),
            ring("x.book", RecordType::BookUpdate, 1 << 10),
        ],
    })
    .unwrap();
    report(&format!("READY {}", run.path().display()));
    if common::child_read_line(LIMIT).as_deref() != Some("go\n") {
        fail("no go from the parent".into());
    }
    for seq in 1..=PER_STREAM {
        if seq <= PACED && seq % 256 == 0 {
            keep_readers_close(&trades, seq);
            keep_readers_close(&book, seq);
        }
        if trades.write(&Trade::make(seq, TAG)) != Ok(seq) {
            fail(format!("trade {seq} not written"));
        }
        if book.write(&BookUpdate::make(seq, TAG)) != Ok(seq) {
            fail(format!("book update {seq} not written"));
        }
    }
    let written = (trades.next_sequence() - 1, book.next_sequence() - 1);
    // Closes both rings: readers see `Closed` and know nothing follows.
    drop((trades, book));
    report(&format!("DONE {} {}", written.0, written.1));
    // The run directory (and so the ring files) lives until the parent lets go.
    common::child_wait_for_parent(LIMIT);
}

/// One stream as a reader follows it.
struct Follow<R: TestRecord> {
    name: &'static str,
    reader: Reader<R>,
    expect: u64,
    received: u64,
    lost: u64,
    done: bool,
}

impl<R: TestRecord> Follow<R> {
    fn attach(dir: &Path, manifest: &Manifest, name: &'static str) -> Self {
        let ring = manifest
            .rings
            .iter()
            .find(|r| r.record_type() == Some(R::TYPE))
            .unwrap_or_else(|| fail(format!("no {name} ring in the manifest")));
        let reader = Reader::<R>::attach(&dir.join(&ring.file), StartAt::Oldest)
            .unwrap_or_else(|e| fail(e.to_string()));
        let expect = reader.first_sequence();
        Self {
            name,
            reader,
            expect,
            received: 0,
            lost: 0,
            done: false,
        }
    }

    /// One poll; returns whether it found nothing new.
    fn poll(&mut self) -> bool {
        match self.reader.try_read() {
            Poll::Record(r) => {
                if r.sequence() != self.expect {
                    fail(format!(
                        "{}: got sequence {}, expected {}",
                        self.name,
                        r.sequence(),
                        self.expect
                    ));
                }
                if let Err(e) = r.verify(TAG) {
                    fail(format!("{}: {e}", self.name));
                }
                self.expect += 1;
                self.received += 1;
                false
            }
            Poll::Lost(n) => {
                if n == 0 {
                    fail(format!("{}: lost 0", self.name));
                }
                self.expect += n;
                self.lost += n;
                false
            }
            Poll::Empty => true,
        }
    }

    /// After the writer closed the ring: read what is left.
    fn finish(&mut self) {
        while !self.poll() {}
        self.done = true;
        let st = self.reader.stats();
        if (st.received, st.lost) != (self.received, self.lost)
            || self.reader.next_sequence() != self.expect
        {
            fail(format!("{}: reader counters {st:?} disagree", self.name));
        }
        report(&format!(
            "RESULT {} {} {} {} {} {}",
            self.name,
            self.received,
            self.lost,
            st.torn,
            self.reader.first_sequence(),
            self.expect
        ));
    }
}

fn reader_role() {
    let dir = PathBuf::from(std::env::var("APBUS_RUN").unwrap());
    let manifest = Manifest::read(&dir).unwrap_or_else(|e| fail(e.to_string()));
    let mut trades = Follow::<Trade>::attach(&dir, &manifest, "trades");
    let mut book = Follow::<BookUpdate>::attach(&dir, &manifest, "book");
    report("ATTACHED");
    let deadline = Instant::now() + LIMIT;
    let mut idle_rounds = 0u32;
    while !(trades.done && book.done) {
        let idle_t = trades.done || trades.poll();
        let idle_b = book.done || book.poll();
        if !(idle_t && idle_b) {
            idle_rounds = 0;
            continue;
        }
        idle_rounds += 1;
        if !idle_rounds.is_multiple_of(256) {
            std::hint::spin_loop();
            continue;
        }
        if Instant::now() > deadline {
            fail("the writer did not finish in time".into());
        }
        for status in [
            trades.reader.writer_status(LIMIT),
            book.reader.writer_status(LIMIT),
        ] {
            if !matches!(status, WriterStatus::Alive | WriterStatus::Closed) {
                fail(format!("writer is {status:?}"));
            }
        }
        if !trades.done && trades.reader.writer_status(LIMIT) == WriterStatus::Closed {
            trades.finish();
        }
        if !book.done && book.reader.writer_status(LIMIT) == WriterStatus::Closed {
            book.finish();
        }
        // Leave the cores to the writer while it is not writing anything new.
        std::thread::yield_now();
    }
}

struct Outcome {
    received: u64,
    lost: u64,
    torn: u64,
    first: u64,
    next: u64,
}

fn parse_result(line: &str) -> (String, Outcome) {
    let f: Vec<&str> = line.split_whitespace().collect();
    let n = |i: usize| f[i].parse::<u64>().unwrap();
    (
        f[0].to_owned(),
        Outcome {
            received: n(1),
            lost: n(2),
            torn: n(3),
            first: n(4),
            next: n(5),
        },
    )
}

#[test]
fn one_writer_two_readers_every_record_verified() {
    match child_role().as_deref() {
        Some("writer") => return writer_role(),
        Some("reader") => return reader_role(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let dir = TestDir::new("multiprocess");
    let deadline = Instant::now() + LIMIT;
    let mut writer = Child::spawn(NAME, "writer", dir.path(), &[]);
    let run = writer.expect("READY", deadline);
    let mut readers: Vec<Child> = (0..2)
        .map(|_| Child::spawn(NAME, "reader", dir.path(), &[("APBUS_RUN", run.clone())]))
        .collect();
    for r in &mut readers {
        r.expect("ATTACHED", deadline);
    }
    let start = Instant::now();
    writer.send("go");
    let done = writer.expect("DONE", deadline);
    let write_time = start.elapsed();
    let written: Vec<u64> = done.split(' ').map(|s| s.parse().unwrap()).collect();
    assert_eq!(written, [PER_STREAM, PER_STREAM]);

    for (i, r) in readers.iter_mut().enumerate() {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (stream, o) = parse_result(&r.expect("RESULT", deadline));
            let written = PER_STREAM;
            println!(
                "reader {i} {stream}: received {} lost {} torn {} of {written}",
                o.received, o.lost, o.torn
            );
            assert_eq!(
                o.first, 1,
                "reader {i} {stream} attached before the first write"
            );
            assert_eq!(o.next, written + 1, "reader {i} {stream} reached the end");
            assert_eq!(
                o.received + o.lost,
                written,
                "reader {i} {stream}: received + lost == written"
            );
            assert!(
                o.received >= PACED,
                "reader {i} {stream} lost records of the paced half"
            );
            assert!(o.torn <= o.lost, "torn copies are counted as lost");
            seen.push(stream);
        }
        seen.sort();
        assert_eq!(seen, ["book", "trades"]);
    }
    for r in &mut readers {
        assert!(r.wait(deadline).success());
    }
    writer.close_stdin();
    assert!(writer.wait(deadline).success());
    println!(
        "{PER_STREAM} records per stream written in {write_time:?}; total {:?}",
        start.elapsed()
    );
    assert!(
        !Path::new(&run).exists(),
        "the writer removed its run directory"
    );
}

//! Processes that die or stall: a writer that dies or stops (readers see it), a new writer under
//! the same name (a new epoch, never mixed with the old one), a reader that is killed or stalls
//! (backpressure stops waiting for it), and cleaning up the runs of dead owners.
//!
//! Child processes are this test binary re-executed on one test (`--exact`) with a role in the
//! environment; they report on stdout and every wait has a deadline.
#![cfg(not(loom))]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use alphapulse_bus::{
    clean_stale_runs, Poll, Reader, RunDir, StartAt, Trade, WriteError, WriterMode, WriterStatus,
};
use common::{child_base, child_role, report, Child, TestDir, TestRecord};

const LONG: Duration = Duration::from_secs(30);

fn deadline() -> Instant {
    Instant::now() + LONG
}

/// Child role: create run `run` with ring `x.trades`, write `APBUS_COUNT` records tagged
/// `APBUS_TAG`, report the ring's path and epoch, then wait to be killed.
fn run_writer_child() {
    let base = child_base();
    let count: u64 = std::env::var("APBUS_COUNT").unwrap().parse().unwrap();
    let tag: u16 = std::env::var("APBUS_TAG").unwrap().parse().unwrap();
    let mut run = RunDir::create(&base, "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", 64, WriterMode::Overwrite)
        .unwrap();
    for seq in 1..=count {
        assert_eq!(w.write(&Trade::make(seq, tag)), Ok(seq));
    }
    report(&format!("READY {} {}", w.epoch(), w.path().display()));
    // Killed by the parent long before this; exiting here would close the ring cleanly.
    common::child_wait_for_parent(LONG);
    report("ERROR the parent did not kill this writer");
}

fn spawn_writer(test: &str, base: &std::path::Path, count: u64, tag: u16) -> (Child, u64, PathBuf) {
    let mut child = Child::spawn(
        test,
        "writer",
        base,
        &[
            ("APBUS_COUNT", count.to_string()),
            ("APBUS_TAG", tag.to_string()),
        ],
    );
    let ready = child.expect("READY", deadline());
    let (epoch, path) = ready.split_once(' ').unwrap();
    (child, epoch.parse().unwrap(), PathBuf::from(path))
}

/// Reads until empty, checking every record's sequence and content; returns the sequences.
fn drain(r: &mut Reader<Trade>, tag: u16) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match r.try_read() {
            Poll::Record(t) => {
                t.verify(tag).unwrap();
                got.push(t.sequence);
            }
            Poll::Empty => return got,
            Poll::Lost(n) => panic!("lost {n} records"),
        }
    }
}

#[test]
fn a_dead_writer_is_seen_and_a_new_writer_starts_a_new_epoch() {
    const NAME: &str = "a_dead_writer_is_seen_and_a_new_writer_starts_a_new_epoch";
    if child_role().is_some() {
        return run_writer_child();
    }
    let dir = TestDir::new("dead-writer");
    let fresh = Duration::from_secs(10);

    // Writer A, in another process, writes 10 records tagged 1.
    let (mut a, epoch_a, path) = spawn_writer(NAME, dir.path(), 10, 1);
    let mut old = Reader::<Trade>::attach(&path, StartAt::Oldest).unwrap();
    assert_eq!(old.epoch(), epoch_a);
    assert_eq!(old.writer_pid(), a.pid());
    assert_eq!(old.writer_status(fresh), WriterStatus::Alive);
    assert_eq!(drain(&mut old, 1), (1..=10).collect::<Vec<_>>());

    // It dies without closing the ring: its lock is gone, so the reader sees it dead (not
    // closed, and not merely stale, however fresh its heartbeat).
    a.kill();
    assert_eq!(old.writer_status(fresh), WriterStatus::Dead);
    assert_eq!(old.try_read(), Poll::Empty);

    // Its run is stale; cleaning removes it, and writer B creates the same run and ring again.
    let cleaned = clean_stale_runs(dir.path()).unwrap();
    assert_eq!(cleaned.len(), 1);
    assert!(cleaned[0].removed, "{cleaned:?}");
    assert!(!path.exists());
    let (b, epoch_b, path_b) = spawn_writer(NAME, dir.path(), 20, 2);
    assert_eq!(path_b, path, "same ring name");
    assert_ne!(epoch_b, epoch_a, "a new writer starts a new epoch");

    // The old reader is told its ring was replaced and never returns one of B's records,
    // although B wrote sequences it is waiting for.
    assert_eq!(old.writer_status(fresh), WriterStatus::Replaced);
    for _ in 0..100 {
        assert_eq!(old.try_read(), Poll::Empty);
    }
    assert_eq!(old.next_sequence(), 11);
    assert_eq!(old.stats().received, 10);

    // A reader attached anew follows B, from B's first record.
    let mut new = Reader::<Trade>::attach(&path, StartAt::Oldest).unwrap();
    assert_eq!(new.epoch(), epoch_b);
    assert_eq!(new.writer_pid(), b.pid());
    assert_eq!(new.writer_status(fresh), WriterStatus::Alive);
    assert_eq!(drain(&mut new, 2), (1..=20).collect::<Vec<_>>());
    drop(b);
    assert_eq!(new.writer_status(fresh), WriterStatus::Dead);
}

#[test]
fn a_closed_or_silent_writer_is_seen() {
    let dir = TestDir::new("silent-writer");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", 8, WriterMode::Overwrite)
        .unwrap();
    let r = Reader::<Trade>::attach(w.path(), StartAt::Oldest).unwrap();
    assert_eq!(
        r.writer_status(Duration::from_secs(10)),
        WriterStatus::Alive
    );

    // Alive but silent for longer than the limit: stale, and fresh again after a heartbeat.
    w.write(&Trade::make(1, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    match r.writer_status(Duration::from_millis(10)) {
        WriterStatus::Stale { silent_ns } => assert!(silent_ns >= 30_000_000, "{silent_ns}"),
        other => panic!("expected Stale, got {other:?}"),
    }
    w.heartbeat();
    assert_eq!(
        r.writer_status(Duration::from_millis(10)),
        WriterStatus::Alive
    );

    // Dropping the writer closes the ring cleanly; the file stays with the run directory.
    drop(w);
    assert_eq!(
        r.writer_status(Duration::from_secs(10)),
        WriterStatus::Closed
    );

    // A new ring under the same name in the same process: the reader sees the replacement.
    let path = r.path().to_owned();
    drop(run);
    assert!(!path.exists());
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w2 = run
        .create_ring::<Trade>("x.trades", 8, WriterMode::Overwrite)
        .unwrap();
    w2.write(&Trade::make(1, 2)).unwrap();
    assert_ne!(w2.epoch(), r.epoch());
    assert_eq!(
        r.writer_status(Duration::from_secs(10)),
        WriterStatus::Replaced
    );
}

/// Child role: attach to the ring at `APBUS_RING`, read `APBUS_COUNT` records, report, and
/// stall (hold the slot without reading) until killed.
fn run_reader_child() {
    let path = PathBuf::from(std::env::var("APBUS_RING").unwrap());
    let count: u64 = std::env::var("APBUS_COUNT").unwrap().parse().unwrap();
    let mut r = Reader::<Trade>::attach(&path, StartAt::Oldest).unwrap();
    report(&format!("ATTACHED {}", r.slot_index()));
    let deadline = deadline();
    let mut got = 0;
    while got < count {
        match r.try_read() {
            Poll::Record(t) => {
                if let Err(e) = t.verify(1) {
                    report(&format!("ERROR {e}"));
                }
                got += 1;
            }
            Poll::Empty => {
                if Instant::now() > deadline {
                    report("ERROR no records came");
                    return;
                }
                std::thread::yield_now();
            }
            Poll::Lost(n) => report(&format!("ERROR lost {n} in backpressure mode")),
        }
    }
    r.heartbeat();
    report(&format!("READ {}", r.next_sequence()));
    common::child_wait_for_parent(LONG);
    report("ERROR the parent did not kill this reader");
}

#[test]
fn a_killed_reader_stops_holding_back_a_backpressure_writer() {
    const NAME: &str = "a_killed_reader_stops_holding_back_a_backpressure_writer";
    if child_role().is_some() {
        return run_reader_child();
    }
    const CAP: u64 = 16;
    let dir = TestDir::new("killed-reader");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", CAP, WriterMode::Backpressure)
        .unwrap();
    // Only death, not silence, may release the writer here.
    w.set_reader_stale_ns(u64::MAX);
    let mut child = Child::spawn(
        NAME,
        "reader",
        dir.path(),
        &[
            ("APBUS_RING", w.path().display().to_string()),
            ("APBUS_COUNT", "4".into()),
        ],
    );
    let slot: usize = child.expect("ATTACHED", deadline()).parse().unwrap();
    for seq in 1..=CAP {
        assert_eq!(w.write(&Trade::make(seq, 1)), Ok(seq));
    }
    assert_eq!(child.expect("READ", deadline()), "5");

    // The reader wants sequence 5: 4 more writes fit, the fifth would overwrite 5.
    for seq in CAP + 1..=CAP + 4 {
        assert_eq!(w.write(&Trade::make(seq, 1)), Ok(seq));
    }
    let full = WriteError::BufferFull {
        reader: slot,
        lag: CAP,
        capacity: CAP,
    };
    assert_eq!(w.write(&Trade::make(CAP + 5, 1)), Err(full));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        w.write(&Trade::make(CAP + 5, 1)),
        Err(full),
        "a live reader is waited for, however long"
    );
    let before = w.readers();
    assert_eq!(before.len(), 1);
    let s = before[0];
    assert_eq!((s.index, s.pid, s.cursor), (slot, child.pid(), 5));
    assert!(s.process_alive && !s.evicted, "{s:?}");

    // Killed (and reaped): the slot shows a dead process, and within a liveness check the
    // writer evicts it and writes again.
    child.kill();
    let after = w.readers();
    assert_eq!(after.len(), 1);
    assert!(!after[0].process_alive, "{:?}", after[0]);
    let seq = common::eventually(Duration::from_secs(5), "the writer to evict", || {
        w.write(&Trade::make(CAP + 5, 1)).ok()
    });
    assert_eq!(seq, CAP + 5);
    let evicted = w.readers();
    assert!(
        evicted[0].evicted && !evicted[0].process_alive,
        "{evicted:?}"
    );
    for seq in CAP + 6..=5 * CAP {
        assert_eq!(w.write(&Trade::make(seq, 1)), Ok(seq));
    }

    // The dead reader's slot is free for the next reader.
    let r = Reader::<Trade>::attach(w.path(), StartAt::Latest).unwrap();
    assert_eq!(r.slot_index(), slot);
    assert_eq!(w.readers().len(), 1);
    assert!(w.readers()[0].process_alive && !w.readers()[0].evicted);
}

#[test]
fn a_silent_reader_is_evicted_and_takes_its_slot_back_when_it_resumes() {
    const CAP: u64 = 8;
    let dir = TestDir::new("silent-reader");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", CAP, WriterMode::Backpressure)
        .unwrap();
    w.set_reader_stale_ns(20_000_000);
    let mut r = Reader::<Trade>::attach(w.path(), StartAt::Oldest).unwrap();
    for seq in 1..=CAP {
        assert_eq!(w.write(&Trade::make(seq, 1)), Ok(seq));
    }
    assert!(matches!(
        w.write(&Trade::make(CAP + 1, 1)),
        Err(WriteError::BufferFull { lag: CAP, .. })
    ));

    // Silent past the limit: evicted although its process (this one) is alive.
    std::thread::sleep(Duration::from_millis(40));
    let seq = common::eventually(Duration::from_secs(5), "the writer to evict", || {
        w.write(&Trade::make(CAP + 1, 1)).ok()
    });
    assert_eq!(seq, CAP + 1);
    let slots = w.readers();
    assert!(slots[0].evicted && slots[0].process_alive, "{slots:?}");

    // It resumes: it learns what it lost, takes its slot back and is waited for again.
    assert_eq!(r.try_read(), Poll::Lost(1));
    let got = drain(&mut r, 1);
    assert_eq!(got, (2..=CAP + 1).collect::<Vec<_>>());
    assert_eq!(r.stats().evictions, 1);
    assert!(!w.readers()[0].evicted);
    for seq in CAP + 2..=2 * CAP + 1 {
        assert_eq!(w.write(&Trade::make(seq, 1)), Ok(seq));
    }
    assert!(matches!(
        w.write(&Trade::make(2 * CAP + 2, 1)),
        Err(WriteError::BufferFull { lag: CAP, .. })
    ));
    let st = r.stats();
    assert_eq!(
        st.received + st.lost,
        r.next_sequence() - r.first_sequence()
    );
}

#[test]
fn backpressure_protects_a_reader_that_attaches_after_the_writer_wrapped() {
    // The writer caches the slowest reader's cursor. With no reader at all it used to cache
    // "no limit" for good, so a reader attaching later was overwritten as if in overwrite mode.
    const CAP: u64 = 8;
    let dir = TestDir::new("late-reader");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", CAP, WriterMode::Backpressure)
        .unwrap();
    for seq in 1..=3 * CAP {
        assert_eq!(
            w.write(&Trade::make(seq, 1)),
            Ok(seq),
            "no reader: never full"
        );
    }
    let mut r = Reader::<Trade>::attach(w.path(), StartAt::Latest).unwrap();
    assert_eq!(r.first_sequence(), 3 * CAP + 1);
    for seq in 3 * CAP + 1..=4 * CAP {
        assert_eq!(w.write(&Trade::make(seq, 1)), Ok(seq));
    }
    assert_eq!(
        w.write(&Trade::make(4 * CAP + 1, 1)),
        Err(WriteError::BufferFull {
            reader: r.slot_index(),
            lag: CAP,
            capacity: CAP
        })
    );
    assert_eq!(
        drain(&mut r, 1),
        (3 * CAP + 1..=4 * CAP).collect::<Vec<_>>()
    );
}

/// Child role: create run `APBUS_RUN` with a ring, report, and wait to be killed.
fn run_owner_child() {
    let run_id = std::env::var("APBUS_RUN").unwrap();
    let mut run = RunDir::create(&child_base(), &run_id).unwrap();
    let _w = run
        .create_ring::<Trade>("x.trades", 8, WriterMode::Overwrite)
        .unwrap();
    report(&format!("READY {}", run.path().display()));
    common::child_wait_for_parent(LONG);
    report("ERROR the parent did not kill this run owner");
}

#[test]
fn clean_stale_runs_removes_dead_runs_and_nothing_else() {
    const NAME: &str = "clean_stale_runs_removes_dead_runs_and_nothing_else";
    if child_role().is_some() {
        return run_owner_child();
    }
    let dir = TestDir::created("clean");
    let base = dir.path().join("base");

    // Two runs whose owners are killed, one live run owned by another process and one by this.
    let mut dead: Vec<(Child, PathBuf)> = ["dead1", "dead2", "live-other"]
        .iter()
        .map(|id| {
            let mut c = Child::spawn(NAME, "owner", &base, &[("APBUS_RUN", id.to_string())]);
            let path = PathBuf::from(c.expect("READY", deadline()));
            (c, path)
        })
        .collect();
    let (mut live_other, live_other_path) = dead.pop().unwrap();
    for (c, _) in &mut dead {
        c.kill();
    }
    let mut live = RunDir::create(&base, "live").unwrap();
    let mut lw = live
        .create_ring::<Trade>("x.trades", 8, WriterMode::Overwrite)
        .unwrap();

    // Things that are not run directories of ours, which must be left alone: a file, a
    // directory with an unusable name, a symlink to a dead-looking run outside the base, and a
    // fresh directory without a lock (a creation in progress).
    std::fs::write(base.join("notes.txt"), b"keep").unwrap();
    std::fs::create_dir(base.join("bad name")).unwrap();
    let outside = {
        let mut r = RunDir::create(dir.path(), "outside").unwrap();
        r.keep();
        r.path().to_owned()
    };
    assert!(outside.join("writer.lock").exists());
    std::os::unix::fs::symlink(&outside, base.join("link")).unwrap();
    std::fs::create_dir(base.join("in-progress")).unwrap();

    let mut cleaned = clean_stale_runs(&base).unwrap();
    cleaned.sort_by(|a, b| a.path.cmp(&b.path));
    let summary: Vec<(String, bool)> = cleaned
        .iter()
        .map(|c| {
            let name = c.path.file_name().unwrap().to_string_lossy().into_owned();
            (name, c.removed)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("dead1".to_owned(), true),
            ("dead2".to_owned(), true),
            ("in-progress".to_owned(), false),
            ("live".to_owned(), false),
            ("live-other".to_owned(), false),
        ]
    );
    for (_, path) in &dead {
        assert!(!path.exists(), "{} was not removed", path.display());
    }
    assert!(live_other_path.join("x.trades").exists());
    assert!(live.path().join("x.trades").exists());
    assert_eq!(std::fs::read(base.join("notes.txt")).unwrap(), b"keep");
    assert!(base.join("bad name").is_dir());
    assert!(base.join("in-progress").is_dir());
    assert!(
        outside.join("writer.lock").exists(),
        "symlink target untouched"
    );
    assert!(std::fs::symlink_metadata(base.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());

    // The live run still works; once its owner is gone it is cleaned too.
    assert_eq!(lw.write(&Trade::make(1, 1)), Ok(1));
    live_other.kill();
    drop(lw);
    drop(live);
    let again = clean_stale_runs(&base).unwrap();
    assert!(again.iter().any(|c| c.path == live_other_path && c.removed));
    assert!(!live_other_path.exists());
    assert!(clean_stale_runs(&dir.path().join("missing"))
        .unwrap()
        .is_empty());
}

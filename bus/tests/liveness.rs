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
    clean_stale_runs, CleanOutcome, CleanedRun, Poll, Reader, RunDir, StartAt, Trade, WriteError,
    WriterMode, WriterStatus,
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
    let mut run = RunDir::create(&base, "run-1-1").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", 64, WriterMode::Overwrite)
        .unwrap();
    run.write_manifest(&common::trades_manifest("run-1-1", &["x.trades"]))
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
    assert!(cleaned[0].removed(), "{cleaned:?}");
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
    // A limit far above a loaded machine's pauses between the heartbeat and the check.
    w.write(&Trade::make(1, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    match r.writer_status(Duration::from_millis(100)) {
        WriterStatus::Stale { silent_ns } => assert!(silent_ns >= 300_000_000, "{silent_ns}"),
        other => panic!("expected Stale, got {other:?}"),
    }
    w.heartbeat();
    assert_eq!(
        r.writer_status(Duration::from_millis(100)),
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
    // Far above a loaded machine's pause while the ring fills, so the reader is waited for.
    w.set_reader_stale_ns(200_000_000);
    let mut r = Reader::<Trade>::attach(w.path(), StartAt::Oldest).unwrap();
    for seq in 1..=CAP {
        assert_eq!(w.write(&Trade::make(seq, 1)), Ok(seq));
    }
    assert!(matches!(
        w.write(&Trade::make(CAP + 1, 1)),
        Err(WriteError::BufferFull { lag: CAP, .. })
    ));

    // Silent past the limit: evicted although its process (this one) is alive.
    std::thread::sleep(Duration::from_millis(400));
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

/// Child role: create run `APBUS_RUN` with a ring and its manifest, report, and wait to be
/// killed.
fn run_owner_child() {
    let run_id = std::env::var("APBUS_RUN").unwrap();
    let mut run = RunDir::create(&child_base(), &run_id).unwrap();
    let _w = run
        .create_ring::<Trade>("x.trades", 8, WriterMode::Overwrite)
        .unwrap();
    run.write_manifest(&common::trades_manifest(&run_id, &["x.trades"]))
        .unwrap();
    run.write_file("digests.json", b"{}").unwrap();
    report(&format!("READY {}", run.path().display()));
    common::child_wait_for_parent(LONG);
    report("ERROR the parent did not kill this run owner");
}

fn outcomes(cleaned: &[CleanedRun]) -> Vec<(String, CleanOutcome)> {
    let mut v: Vec<_> = cleaned
        .iter()
        .map(|c| {
            let name = c.path.file_name().unwrap().to_string_lossy().into_owned();
            (name, c.outcome.clone())
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn kept(reason_part: &str) -> impl Fn(&CleanOutcome) -> bool + '_ {
    move |o| matches!(o, CleanOutcome::Kept { reason } if reason.contains(reason_part))
}

#[test]
fn clean_stale_runs_removes_dead_runs_and_nothing_else() {
    const NAME: &str = "clean_stale_runs_removes_dead_runs_and_nothing_else";
    if child_role().is_some() {
        return run_owner_child();
    }
    let dir = TestDir::created("clean");
    let base = dir.path().join("base");

    // Three runs whose owners are killed (one of them then gets a foreign file, one a
    // subdirectory), one live run owned by another process and one by this process.
    let mut children: Vec<(Child, PathBuf)> = ["run-1-1", "run-1-2", "run-1-3", "run-2-1"]
        .iter()
        .map(|id| {
            let mut c = Child::spawn(NAME, "owner", &base, &[("APBUS_RUN", id.to_string())]);
            let path = PathBuf::from(c.expect("READY", deadline()));
            (c, path)
        })
        .collect();
    let (mut live_other, live_other_path) = children.pop().unwrap();
    for (c, _) in &mut children {
        c.kill();
    }
    let dead = children[0].1.clone();
    let with_foreign = children[1].1.clone();
    let with_subdir = children[2].1.clone();
    std::fs::write(with_foreign.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir(with_subdir.join("keep")).unwrap();
    std::fs::write(with_subdir.join("keep").join("data"), b"mine").unwrap();
    let mut live = RunDir::create(&base, "run-3-1").unwrap();
    let mut lw = live
        .create_ring::<Trade>("x.trades", 8, WriterMode::Overwrite)
        .unwrap();
    // A dead-looking run without a lock or manifest (not provably a run) and one whose
    // manifest names another run.
    std::fs::create_dir(base.join("run-4-1")).unwrap();
    std::fs::write(base.join("run-4-1").join("x.trades"), b"?").unwrap();
    let mut other = RunDir::create(&base, "run-5-1").unwrap();
    other
        .write_manifest(&common::trades_manifest("run-9-9", &[]))
        .unwrap();
    other.keep();
    drop(other);

    let cleaned = clean_stale_runs(&base).unwrap();
    let got = outcomes(&cleaned);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["run-1-1", "run-1-2", "run-1-3", "run-2-1", "run-3-1", "run-4-1", "run-5-1"]
    );
    assert_eq!(got[0].1, CleanOutcome::Removed);
    assert!(
        kept("\"notes.txt\" is not a file of this run")(&got[1].1),
        "{:?}",
        got[1]
    );
    assert!(kept("\"keep\" is a directory")(&got[2].1), "{:?}", got[2]);
    assert_eq!(got[3].1, CleanOutcome::Alive);
    assert_eq!(got[4].1, CleanOutcome::Alive);
    assert!(kept("not provably a run")(&got[5].1), "{:?}", got[5]);
    assert!(kept("manifest is not valid")(&got[6].1), "{:?}", got[6]);
    assert!(!dead.exists(), "{} was not removed", dead.display());
    assert_eq!(
        std::fs::read(with_foreign.join("notes.txt")).unwrap(),
        b"mine"
    );
    assert!(with_foreign.join("x.trades").exists(), "kept whole");
    assert_eq!(
        std::fs::read(with_subdir.join("keep").join("data")).unwrap(),
        b"mine"
    );
    assert!(with_subdir.join("manifest.json").exists(), "kept whole");
    assert!(live_other_path.join("x.trades").exists());
    assert!(live.path().join("x.trades").exists());
    assert!(base.join("run-4-1").join("x.trades").exists());

    // The live runs still work; once their owners are gone they are cleaned too.
    assert_eq!(lw.write(&Trade::make(1, 1)), Ok(1));
    live_other.kill();
    drop(lw);
    live.keep();
    drop(live);
    let again = outcomes(&clean_stale_runs(&base).unwrap());
    assert!(
        again
            .iter()
            .any(|(n, o)| n == "run-2-1" && *o == CleanOutcome::Removed),
        "{again:?}"
    );
    // No manifest and changed within the last minute: may still be being created.
    assert!(
        again
            .iter()
            .any(|(n, o)| n == "run-3-1" && kept("may still be being created")(o)),
        "{again:?}"
    );
    assert!(!live_other_path.exists());
}

#[test]
fn clean_stale_runs_refuses_a_directory_that_is_not_a_base_of_runs() {
    // What `load-tester clean --shm-dir ~` used to empty: a home directory.
    let dir = TestDir::created("clean-home");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::create_dir(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh").join("id_ed25519"), b"secret").unwrap();
    std::fs::create_dir(home.join("docs")).unwrap();
    std::fs::write(home.join("notes.txt"), b"mine").unwrap();
    // Even with a dead run among them.
    let mut run = RunDir::create(&home, "run-1-1").unwrap();
    run.keep();
    drop(run);
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for d in [".ssh", "docs"] {
        std::fs::File::open(home.join(d))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let before = tree(&home);
    let e = clean_stale_runs(&home).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, alphapulse_bus::Error::NotARunBase { entry, .. } if entry == ".ssh"),
        "{e:?}"
    );
    assert!(
        msg.contains(&*home.to_string_lossy()) && msg.contains("\".ssh\""),
        "{msg}"
    );
    assert!(msg.contains("nothing was removed"), "{msg}");
    assert_eq!(tree(&home), before, "something was removed");

    // A symlink or a file among run directories is refused the same way.
    let base = dir.path().join("base");
    let mut run = RunDir::create(&base, "run-1-1").unwrap();
    run.keep();
    drop(run);
    std::os::unix::fs::symlink(home.join("docs"), base.join("run-2-2")).unwrap();
    let e = clean_stale_runs(&base).unwrap_err();
    assert!(
        e.to_string()
            .contains("\"run-2-2\" is a symlink, not a run directory"),
        "{e}"
    );
    assert!(base.join("run-1-1").join("writer.lock").exists());

    // A base that does not exist is left so.
    let missing = dir.path().join("missing");
    assert!(clean_stale_runs(&missing).unwrap().is_empty());
    assert!(!missing.exists());
}

/// Every path under `dir`, recursively, with its contents for files.
fn tree(dir: &std::path::Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.push((p.clone(), None));
            out.extend(tree(&p));
        } else {
            out.push((p.clone(), Some(std::fs::read(&p).unwrap())));
        }
    }
    out.sort();
    out
}

#[test]
fn a_slow_writer_keeps_its_heartbeat_fresh_by_the_clock() {
    let dir = TestDir::new("slow-writer");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", 8, WriterMode::Overwrite)
        .unwrap();
    let r = Reader::<Trade>::attach(w.path(), StartAt::Oldest).unwrap();
    // 64 writes spread over 600 ms, far fewer than 1024: the writer looks at the clock on the
    // 64th and refreshes its heartbeat, so it is not stale by a 300 ms limit (far above a
    // loaded machine's pause between that write and the check).
    for seq in 1..=63 {
        w.write(&Trade::make(seq, 1)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(600));
    assert!(matches!(
        r.writer_status(Duration::from_millis(300)),
        WriterStatus::Stale { .. }
    ));
    w.write(&Trade::make(64, 1)).unwrap();
    assert_eq!(
        r.writer_status(Duration::from_millis(300)),
        WriterStatus::Alive
    );
}

#[test]
fn a_reader_publishes_what_it_caught_up_on_at_most_every_8_polls() {
    let dir = TestDir::new("catch-up");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", 8, WriterMode::Overwrite)
        .unwrap();
    let mut r = Reader::<Trade>::attach(w.path(), StartAt::Oldest).unwrap();
    let published = |w: &alphapulse_bus::Writer<Trade>| w.readers()[0].received;
    // One record, one empty poll, and so on: publishing each time it catches up would be a
    // heartbeat every other poll.
    let mut polls = 0;
    for seq in 1..=3 {
        w.write(&Trade::make(seq, 1)).unwrap();
        assert!(matches!(r.try_read(), Poll::Record(_)));
        assert_eq!(r.try_read(), Poll::Empty);
        polls += 2;
        assert_eq!(published(&w), 0, "published after {polls} polls");
    }
    // Idle polls publish it within 8 polls of the last heartbeat.
    while polls < 8 {
        assert_eq!(r.try_read(), Poll::Empty);
        polls += 1;
    }
    assert_eq!(published(&w), 3);
}

#[test]
fn a_reader_of_another_pid_namespace_is_never_judged_by_its_pid() {
    use alphapulse_bus::layout::{reader_slot, OFF_READERS};
    use std::os::unix::fs::FileExt as _;
    const CAP: u64 = 8;
    let dir = TestDir::new("pid-ns");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", CAP, WriterMode::Backpressure)
        .unwrap();
    // Only a dead pid, not silence, could release the writer here.
    w.set_reader_stale_ns(u64::MAX);
    let r = Reader::<Trade>::attach(w.path(), StartAt::Oldest).unwrap();
    assert_eq!(r.slot_index(), 0);
    std::mem::forget(r);
    // Slot 0 now claims to belong to a pid that does not exist here, registered from another
    // pid namespace, where that pid may well be a live reader.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(w.path())
        .unwrap();
    let put = |field: usize, v: u64| {
        f.write_all_at(&v.to_le_bytes(), (OFF_READERS + field) as u64)
            .unwrap()
    };
    let no_such_pid: u64 = 0x3FFF_FFF0;
    put(
        reader_slot::OWNER,
        (no_such_pid << 32) | reader_slot::ACTIVE,
    );
    put(reader_slot::PID_NS, 1);
    for seq in 1..=CAP {
        assert_eq!(w.write(&Trade::make(seq, 1)), Ok(seq));
    }
    // The writer waits for it past its liveness checks, and an attacher does not take its slot.
    for _ in 0..3 {
        assert!(w.write(&Trade::make(CAP + 1, 1)).is_err());
        std::thread::sleep(Duration::from_millis(15));
    }
    let other = Reader::<Trade>::attach(w.path(), StartAt::Latest).unwrap();
    assert_eq!(other.slot_index(), 1);
    drop(other);
    // Registered from this namespace (or an unknown one), the same dead pid is judged dead.
    put(reader_slot::PID_NS, 0);
    let seq = common::eventually(Duration::from_secs(5), "the writer to evict", || {
        w.write(&Trade::make(CAP + 1, 1)).ok()
    });
    assert_eq!(seq, CAP + 1);
    let again = Reader::<Trade>::attach(w.path(), StartAt::Latest).unwrap();
    assert_eq!(again.slot_index(), 0);
}

/// A writer that restarts in process starts a new epoch under the same name: a reader of the
/// old ring reads everything the old one published, sees it replaced, and attaches again to
/// the new one from sequence 1; nothing is mixed or lost.
#[test]
fn a_restarted_writer_starts_a_new_epoch_that_readers_follow() {
    let dir = TestDir::new("restart");
    let mut run = RunDir::create(dir.path(), "run-1-1").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", 64, WriterMode::Overwrite)
        .unwrap();
    let path = w.path().to_owned();
    let mut r = Reader::<Trade>::attach(&path, StartAt::Oldest).unwrap();
    for seq in 1..=3 {
        assert_eq!(w.write(&Trade::make(seq, 1)), Ok(seq));
    }
    let old_epoch = w.epoch();
    w.restart().unwrap();
    assert_ne!(w.epoch(), old_epoch);
    assert_eq!(w.path(), path);
    assert_eq!(w.write(&Trade::make(1, 2)), Ok(1));
    for seq in 1..=3 {
        match r.try_read() {
            Poll::Record(t) => assert_eq!((t.sequence, t.exchange_id), (seq, 1)),
            other => panic!("expected record {seq} of the old epoch, got {other:?}"),
        }
    }
    assert!(matches!(r.try_read(), Poll::Empty));
    assert_eq!(r.writer_status(LONG), WriterStatus::Replaced);
    let mut r = Reader::<Trade>::attach(&path, StartAt::Oldest).unwrap();
    assert_eq!(r.epoch(), w.epoch());
    match r.try_read() {
        Poll::Record(t) => assert_eq!((t.sequence, t.exchange_id), (1, 2)),
        other => panic!("expected the new epoch's first record, got {other:?}"),
    }
    // No file of the restart is left beside the ring.
    let mut names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["writer.lock", "x.trades"]);
}

//! Readers registering while a backpressure writer runs flat out: once `Reader::attach` has
//! returned, every record from the reader's first sequence on is the reader's to read, so none
//! may be overwritten under it, however the attach interleaved with the writer's scans of the
//! reader table.
//!
//! A capacity-8 ring makes the writer wrap (and rescan) every few writes, so that the window
//! between a reader choosing its start and the writer noticing it is hit often.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alphapulse_bus::{Poll, Reader, RunDir, StartAt, Trade, WriterMode};
use common::{TestDir, TestRecord};

const CAP: u64 = 8;
const ATTACHES: u32 = 10_000;
/// Records each attached reader must read before detaching: two rings' worth, so that the
/// writer has to wait for it at least once.
const READ_EACH: u64 = 2 * CAP;
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn no_record_promised_to_a_new_reader_is_overwritten() {
    let dir = TestDir::new("attach-stress");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", CAP, WriterMode::Backpressure)
        .unwrap();
    // The readers live in this process; none may be evicted because the scheduler paused it.
    w.set_reader_stale_ns(u64::MAX);
    let path = w.path().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut refused = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let seq = w.next_sequence();
                match w.write(&Trade::make(seq, 1)) {
                    Ok(_) => written.store(seq, Ordering::Relaxed),
                    Err(_) => {
                        refused += 1;
                        std::hint::spin_loop();
                    }
                }
            }
            refused
        })
    };

    let deadline = Instant::now() + LIMIT;
    let mut skipped_at_attach = 0u64;
    for i in 0..ATTACHES {
        let start = if i % 2 == 0 {
            StartAt::Latest
        } else {
            StartAt::Oldest
        };
        let mut r = Reader::<Trade>::attach(&path, start).unwrap();
        let first = r.first_sequence();
        skipped_at_attach += r.stats().skipped_at_attach;
        let mut expect = first;
        while expect < first + READ_EACH {
            match r.try_read() {
                Poll::Record(t) => {
                    assert_eq!(t.sequence, expect, "attach {i} ({start:?})");
                    t.verify(1).unwrap();
                    expect += 1;
                }
                Poll::Empty => {
                    assert!(Instant::now() < deadline, "attach {i}: the writer stopped");
                    std::hint::spin_loop();
                }
                Poll::Lost(n) => panic!(
                    "attach {i} ({start:?}) started at {first}: {n} promised records were \
                     overwritten before sequence {expect} was read (writer at {})",
                    written.load(Ordering::Relaxed)
                ),
            }
        }
        let st = r.stats();
        assert_eq!((st.lost, st.torn, st.received), (0, 0, READ_EACH));
    }
    stop.store(true, Ordering::Relaxed);
    let refused = writer.join().unwrap();
    assert!(refused > 0, "the writer never had to wait for a reader");
    eprintln!(
        "{ATTACHES} attaches, {} records written, {refused} writes refused, {skipped_at_attach} \
         records skipped at attach",
        written.load(Ordering::Relaxed)
    );
}

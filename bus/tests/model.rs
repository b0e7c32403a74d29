//! Property tests against an exact model of a ring, in one process: for any capacity and any
//! interleaving of writes, reads, attaches and detaches, every reader returns exactly the written
//! sequence minus what it reports lost, in order, without duplicates, and with intact contents;
//! `received + lost == next - first` always. In backpressure mode nothing is ever lost (readers
//! attaching at the oldest record included), and a write is refused exactly when the slowest
//! reader is `capacity` records behind.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use alphapulse_bus::{
    BookUpdate, Poll, Reader, RunDir, StartAt, Trade, WriteError, Writer, WriterMode,
};
use common::{TestDir, TestRecord};
use proptest::prelude::*;

const MAX_READERS: usize = 4;
const TAG: u16 = 7;

#[derive(Debug, Clone)]
enum Op {
    /// Try to write this many records.
    Write(u16),
    /// Reader `index % readers` tries this many reads.
    Read { reader: usize, reads: u16 },
    /// A new reader attaches.
    Attach { oldest: bool },
    /// Reader `index % readers` detaches.
    Detach(usize),
}

fn ops(max_burst: u16) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (1..=max_burst).prop_map(Op::Write),
        5 => (any::<usize>(), 1..=max_burst).prop_map(|(reader, reads)| Op::Read { reader, reads }),
        1 => any::<bool>().prop_map(|oldest| Op::Attach { oldest }),
        1 => any::<usize>().prop_map(Op::Detach),
    ];
    prop::collection::vec(op, 1..120)
}

/// What the model knows of one reader.
struct Model<R: TestRecord> {
    reader: Reader<R>,
    first: u64,
    /// The sequence it must return next.
    expect: u64,
    received: u64,
    lost: u64,
}

fn fresh_run(name: &str) -> (TestDir, RunDir) {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let dir = TestDir::new(&format!("{name}-{}", CASE.fetch_add(1, Ordering::Relaxed)));
    let run = RunDir::create(dir.path(), "run").unwrap();
    (dir, run)
}

fn attach<R: TestRecord>(w: &Writer<R>, oldest: bool) -> Result<Model<R>, TestCaseError> {
    let published = w.next_sequence() - 1;
    let capacity = w.capacity();
    let start = if oldest {
        StartAt::Oldest
    } else {
        StartAt::Latest
    };
    let reader = Reader::<R>::attach(w.path(), start).unwrap();
    let wanted = if oldest {
        published.saturating_sub(capacity) + 1
    } else {
        published + 1
    };
    // A backpressure writer may hold a gate cached up to half a ring below its cursor, which a
    // reader cannot see: it is promised only what the writer cannot overwrite without seeing it.
    let first = if w.mode() == WriterMode::Backpressure && published >= capacity {
        wanted.max(published + 1 - capacity / 2)
    } else {
        wanted
    };
    prop_assert_eq!(reader.first_sequence(), first);
    prop_assert_eq!(reader.stats().skipped_at_attach, first - wanted);
    prop_assert_eq!(reader.next_sequence(), first);
    Ok(Model {
        reader,
        first,
        expect: first,
        received: 0,
        lost: 0,
    })
}

/// One read by `m`, checked against what a single-threaded ring must return.
/// Returns whether it read a record.
fn read_one<R: TestRecord>(
    m: &mut Model<R>,
    published: u64,
    capacity: u64,
) -> Result<bool, TestCaseError> {
    let got = m.reader.try_read();
    if m.expect > published {
        prop_assert_eq!(
            got,
            Poll::Empty,
            "expect {} published {}",
            m.expect,
            published
        );
        return Ok(false);
    }
    if m.expect + capacity <= published {
        // The slot of `expect` already holds a later lap: the reader must report a loss and
        // resume at a record that is still in the ring.
        let Poll::Lost(n) = got else {
            return Err(TestCaseError::fail(format!(
                "expected a loss at {} (published {published}), got {got:?}",
                m.expect
            )));
        };
        prop_assert!(n >= 1);
        m.expect += n;
        m.lost += n;
        prop_assert!(
            m.expect > published - capacity && m.expect <= published,
            "resumed at {} with {} published",
            m.expect,
            published
        );
        return Ok(false);
    }
    match got {
        Poll::Record(r) => {
            prop_assert_eq!(r.sequence(), m.expect);
            if let Err(e) = r.verify(TAG) {
                return Err(TestCaseError::fail(e));
            }
            m.expect += 1;
            m.received += 1;
            Ok(true)
        }
        other => Err(TestCaseError::fail(format!(
            "expected record {} (published {published}), got {other:?}",
            m.expect
        ))),
    }
}

/// The reader's own counters and its slot in the header agree with the model.
fn check_counters<R: TestRecord>(m: &Model<R>, w: &Writer<R>) -> Result<(), TestCaseError> {
    let st = m.reader.stats();
    prop_assert_eq!(st.received, m.received);
    prop_assert_eq!(st.lost, m.lost);
    prop_assert_eq!(st.torn, 0, "no torn copy without concurrency");
    prop_assert_eq!(m.reader.next_sequence(), m.expect);
    prop_assert_eq!(m.reader.first_sequence(), m.first);
    prop_assert_eq!(st.received + st.lost, m.expect - m.first);
    prop_assert_eq!(m.reader.lag(), w.next_sequence() - m.expect);
    let slot = w
        .readers()
        .into_iter()
        .find(|s| s.index == m.reader.slot_index())
        .expect("the reader's slot is registered");
    prop_assert_eq!(slot.pid, std::process::id());
    prop_assert_eq!(slot.cursor, m.expect);
    prop_assert_eq!(slot.lost, m.lost);
    prop_assert!(slot.process_alive && !slot.evicted);
    Ok(())
}

fn overwrite_model<R: TestRecord>(cap_log2: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let capacity = 1u64 << cap_log2;
    let (_dir, mut run) = fresh_run("overwrite");
    let mut w = run
        .create_ring::<R>("x.ring", capacity, WriterMode::Overwrite)
        .unwrap();
    let mut readers: Vec<Model<R>> = vec![attach(&w, true)?];
    for op in ops {
        match op {
            Op::Write(n) => {
                for _ in 0..n {
                    let seq = w.next_sequence();
                    prop_assert_eq!(w.write(&R::make(seq, TAG)), Ok(seq));
                }
            }
            Op::Read { reader, reads } if !readers.is_empty() => {
                let published = w.next_sequence() - 1;
                let i = reader % readers.len();
                for _ in 0..reads {
                    read_one(&mut readers[i], published, capacity)?;
                }
                check_counters(&readers[i], &w)?;
            }
            Op::Attach { oldest } if readers.len() < MAX_READERS => {
                readers.push(attach(&w, oldest)?);
            }
            Op::Detach(i) if !readers.is_empty() => {
                let m = readers.remove(i % readers.len());
                check_counters(&m, &w)?;
                let slot = m.reader.slot_index();
                drop(m);
                prop_assert!(w.readers().iter().all(|s| s.index != slot));
            }
            _ => {}
        }
    }
    // Drain everyone: each ends exactly at the writer, having accounted for every sequence
    // from where it started.
    let published = w.next_sequence() - 1;
    for m in &mut readers {
        let mut steps = 0;
        while m.expect <= published {
            read_one(m, published, capacity)?;
            steps += 1;
            prop_assert!(steps <= 2 * capacity + 2, "draining does not end");
        }
        // Idle polls publish the received count within 8 polls.
        for _ in 0..8 {
            read_one(m, published, capacity)?;
        }
        check_counters(m, &w)?;
        prop_assert_eq!(m.expect, published + 1);
        let slot = w
            .readers()
            .into_iter()
            .find(|s| s.index == m.reader.slot_index())
            .unwrap();
        prop_assert_eq!(slot.received, m.received);
    }
    prop_assert_eq!(w.readers().len(), readers.len());
    Ok(())
}

fn backpressure_model<R: TestRecord>(
    cap_log2: u32,
    initial: usize,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let capacity = 1u64 << cap_log2;
    let (_dir, mut run) = fresh_run("backpressure");
    let mut w = run
        .create_ring::<R>("x.ring", capacity, WriterMode::Backpressure)
        .unwrap();
    // Every reader here lives in this process; none may be evicted for being slow to poll.
    w.set_reader_stale_ns(u64::MAX);
    let mut readers: Vec<Model<R>> = Vec::new();
    for _ in 0..initial {
        readers.push(attach(&w, true)?);
    }
    for op in ops {
        match op {
            Op::Write(n) => {
                for _ in 0..n {
                    let seq = w.next_sequence();
                    let slowest = readers
                        .iter()
                        .min_by_key(|m| (m.expect, m.reader.slot_index()));
                    let want = match slowest {
                        Some(m) if seq - m.expect >= capacity => {
                            // Never further behind than the capacity: nothing is ever lost.
                            prop_assert_eq!(seq - m.expect, capacity);
                            Err(WriteError::BufferFull {
                                reader: m.reader.slot_index(),
                                lag: capacity,
                                capacity,
                            })
                        }
                        _ => Ok(seq),
                    };
                    let got = w.write(&R::make(seq, TAG));
                    prop_assert_eq!(got, want);
                    if got.is_err() {
                        prop_assert_eq!(w.next_sequence(), seq, "a refused write writes nothing");
                        break;
                    }
                }
            }
            Op::Read { reader, reads } if !readers.is_empty() => {
                let published = w.next_sequence() - 1;
                let i = reader % readers.len();
                for _ in 0..reads {
                    read_one(&mut readers[i], published, capacity)?;
                }
                check_counters(&readers[i], &w)?;
                prop_assert_eq!(readers[i].lost, 0);
            }
            // Readers that join later, at the oldest record or the latest, are protected from
            // their first record on.
            Op::Attach { oldest } if readers.len() < MAX_READERS => {
                readers.push(attach(&w, oldest)?);
            }
            Op::Detach(i) if !readers.is_empty() => {
                let m = readers.remove(i % readers.len());
                check_counters(&m, &w)?;
            }
            _ => {}
        }
    }
    let published = w.next_sequence() - 1;
    for m in &mut readers {
        while read_one(m, published, capacity)? {}
        check_counters(m, &w)?;
        prop_assert_eq!(m.lost, 0);
        prop_assert_eq!(m.expect, published + 1);
        prop_assert_eq!(m.received, published + 1 - m.first);
    }
    // Everyone has read everything: the ring takes exactly `capacity` more writes.
    if !readers.is_empty() {
        for _ in 0..capacity {
            let seq = w.next_sequence();
            prop_assert_eq!(w.write(&R::make(seq, TAG)), Ok(seq));
        }
        prop_assert!(w.write(&R::make(w.next_sequence(), TAG)).is_err());
    }
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn overwrite_trades_match_the_model(cap_log2 in 1u32..=6, ops in ops(40)) {
        overwrite_model::<Trade>(cap_log2, ops)?;
    }

    #[test]
    fn backpressure_trades_match_the_model(
        cap_log2 in 1u32..=6,
        initial in 0usize..=3,
        ops in ops(40),
    ) {
        backpressure_model::<Trade>(cap_log2, initial, ops)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn overwrite_book_updates_match_the_model(cap_log2 in 1u32..=5, ops in ops(24)) {
        overwrite_model::<BookUpdate>(cap_log2, ops)?;
    }

    #[test]
    fn backpressure_book_updates_match_the_model(
        cap_log2 in 1u32..=5,
        initial in 0usize..=3,
        ops in ops(24),
    ) {
        backpressure_model::<BookUpdate>(cap_log2, initial, ops)?;
    }
}

use std::fs::File;
use std::io::Write;

use alphapulse_bus::{Record, Trade};

use super::format::{Header, FORMAT_NAME, VERSION};
use super::reader::CaptureFile;
use super::writer::{partial_of, CaptureWriter};
use crate::plan::Stream;

fn header() -> Header {
    Header {
        format: FORMAT_NAME.into(),
        tool: "test".into(),
        created_unix_ms: 0,
        exchanges: vec!["a".into(), "b".into()],
        symbols: vec!["X/Y".into()],
        origin: "test".into(),
        clock: "monotonic".into(),
    }
}

fn trade(ts: u64, seq: u64) -> Trade {
    let mut t = Trade {
        sequence: seq,
        send_ts_ns: ts,
        exchange_id: 1,
        side: 1,
        trade_id: seq,
        price: 100,
        size: 1,
        ..Trade::default()
    };
    t.seal();
    t
}

fn write(path: &std::path::Path, n: u64) {
    let mut w = CaptureWriter::create(path, &header(), || {}).unwrap();
    for i in 0..n {
        w.push(
            1,
            Stream::Trades,
            bytemuck::bytes_of(&trade(1000 + i * 10, i + 1)),
        );
    }
    let s = w.finish().unwrap();
    assert_eq!(s.records, n);
}

#[test]
fn a_capture_reads_back_record_for_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.apcap");
    write(&path, 10_000);
    assert!(!partial_of(&path).exists(), "the partial file is renamed");
    let c = CaptureFile::open(&path).unwrap();
    assert_eq!(c.header, header());
    assert_eq!((c.first_ts, c.last_ts), (1000, 1000 + 9_999 * 10));
    let src = &c.sources[&(1, Stream::Trades)];
    assert_eq!(src.records, 10_000);
    assert_eq!(src.chunks.len(), 3);
    let mut f = File::open(&path).unwrap();
    let mut i = 0u64;
    for chunk in &src.chunks {
        let raw = c.read_chunk(&mut f, chunk).unwrap();
        for r in raw.chunks_exact(64) {
            assert_eq!(r, bytemuck::bytes_of(&trade(1000 + i * 10, i + 1)));
            i += 1;
        }
    }
    assert_eq!(i, 10_000);
}

fn problem(path: &std::path::Path) -> String {
    CaptureFile::open(path).unwrap_err().to_string()
}

#[test]
fn bad_captures_are_refused_with_where_and_what() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.apcap");
    write(&path, 5000);
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad");

    std::fs::write(&bad, &good[..good.len() - 5]).unwrap();
    assert!(problem(&bad).contains("truncated"), "{}", problem(&bad));
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    assert!(problem(&bad).contains("truncated"), "{}", problem(&bad));

    std::fs::write(&bad, b"{\"not\": \"a capture\"}").unwrap();
    assert!(
        problem(&bad).contains("not an AlphaPulse capture"),
        "{}",
        problem(&bad)
    );

    let mut newer = good.clone();
    newer[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
    std::fs::write(&bad, &newer).unwrap();
    let p = problem(&bad);
    assert!(
        p.contains("version 2") && p.contains("newer load-tester"),
        "{p}"
    );

    // A flipped byte inside the first chunk's compressed frame fails when the chunk is read.
    let c = CaptureFile::open(&path).unwrap();
    let chunk = c.sources[&(1, Stream::Trades)].chunks[0];
    let mut flipped = good.clone();
    flipped[chunk.offset as usize + 36 + 20] ^= 0xFF;
    std::fs::write(&bad, &flipped).unwrap();
    let c = CaptureFile::open(&bad).unwrap();
    let e = c
        .read_chunk(&mut File::open(&bad).unwrap(), &chunk)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("at byte {}", chunk.offset)), "{e}");

    // A chunk header that disagrees with the index.
    let mut lying = good.clone();
    lying[chunk.offset as usize + 8] ^= 1;
    std::fs::write(&bad, &lying).unwrap();
    assert!(
        problem(&bad).contains(&format!("at byte {}", chunk.offset)),
        "{}",
        problem(&bad)
    );

    assert!(problem(&dir.path().join("missing")).contains("cannot open"));
    assert!(problem(dir.path()).contains("not a regular file"));
}

#[test]
fn an_existing_partial_capture_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.apcap");
    File::create(partial_of(&path))
        .unwrap()
        .write_all(b"mine")
        .unwrap();
    let e = CaptureWriter::create(&path, &header(), || {})
        .err()
        .unwrap();
    assert!(e.to_string().contains("cannot create"), "{e}");
    assert_eq!(std::fs::read(partial_of(&path)).unwrap(), b"mine");
}

#[test]
fn a_record_whose_time_goes_back_is_left_out_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.apcap");
    let mut w = CaptureWriter::create(&path, &header(), || {}).unwrap();
    for (ts, seq) in [(100, 1), (200, 2), (150, 3), (300, 4)] {
        w.push(1, Stream::Trades, bytemuck::bytes_of(&trade(ts, seq)));
    }
    let s = w.finish().unwrap();
    assert_eq!((s.records, s.backwards), (3, 1));
    let c = CaptureFile::open(&path).unwrap();
    assert_eq!((c.first_ts, c.last_ts), (100, 300));
}

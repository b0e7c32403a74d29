//! Compares two captures record by record: did a replay reproduce what was recorded?
//!
//! ```text
//! cargo run --release --example compare_captures -- RECORDED.apcap REPLAYED.apcap
//! ```
//!
//! For each source it checks that both hold the same records in the same order (every field
//! but the send time and the checksum), then prints how far each replayed record's time is
//! from the recorded one's: p50, p99, p99.9 and max. Two captures have no common clock, so the
//! times are aligned twice: each from its capture's first record (which charges every record
//! with the first one's own delay, often the slowest write of a run), and at the median offset
//! (a constant shift is not a timing error; what remains is each record's own deviation).
//! Exit status 0 when the records match, 1 when they do not, 2 for a file that is not a
//! capture.

use std::fs::File;
use std::path::Path;

use alphapulse_bus::{BookUpdate, Trade};
use alphapulse_load_tester::plan::Stream;
use alphapulse_load_tester::source::capture::format::record_size;
use alphapulse_load_tester::source::capture::reader::CaptureFile;

type Sources = Vec<((u16, Stream), Vec<Vec<u8>>)>;

fn load(path: &Path) -> Result<Sources, String> {
    let c = CaptureFile::open(path).map_err(|e| e.to_string())?;
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (&key, s) in &c.sources {
        let mut records = Vec::with_capacity(s.records as usize);
        for chunk in &s.chunks {
            let raw = c.read_chunk(&mut f, chunk).map_err(|e| e.to_string())?;
            records.extend(raw.chunks_exact(record_size(key.1)).map(<[u8]>::to_vec));
        }
        out.push((key, records));
    }
    Ok(out)
}

fn ts(r: &[u8]) -> u64 {
    u64::from_le_bytes(r[8..16].try_into().expect("a record has 16 bytes"))
}

/// The record without its send time and checksum.
fn content(stream: Stream, r: &[u8]) -> Vec<u8> {
    match stream {
        Stream::Trades => {
            let mut t: Trade = bytemuck::pod_read_unaligned(r);
            (t.send_ts_ns, t.checksum) = (0, 0);
            bytemuck::bytes_of(&t).to_vec()
        }
        Stream::Book => {
            let mut u: BookUpdate = bytemuck::pod_read_unaligned(r);
            (u.send_ts_ns, u.checksum) = (0, 0);
            bytemuck::bytes_of(&u).to_vec()
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b] = args.as_slice() else {
        eprintln!("usage: compare_captures RECORDED.apcap REPLAYED.apcap");
        std::process::exit(2);
    };
    let (first, second) = match (load(Path::new(a)), load(Path::new(b))) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let start = |s: &Sources| s.iter().filter_map(|(_, v)| v.first().map(|r| ts(r))).min();
    let (Some(a0), Some(b0)) = (start(&first), start(&second)) else {
        eprintln!("error: a capture holds no records");
        std::process::exit(2);
    };
    let end = |s: &Sources| s.iter().filter_map(|(_, v)| v.last().map(|r| ts(r))).max();
    let (span_a, span_b) = (
        end(&first).unwrap_or(a0) - a0,
        end(&second).unwrap_or(b0) - b0,
    );
    println!(
        "spans: {:.6} s recorded, {:.6} s replayed (ratio {:.4})",
        span_a as f64 / 1e9,
        span_b as f64 / 1e9,
        span_a as f64 / span_b.max(1) as f64
    );
    let mut same = first.len() == second.len();
    let mut drift = Vec::new();
    for ((ka, ra), (kb, rb)) in first.iter().zip(&second) {
        if ka != kb || ra.len() != rb.len() {
            println!("{ka:?}: {} records, {kb:?}: {}", ra.len(), rb.len());
            same = false;
        }
        let mismatches = ra
            .iter()
            .zip(rb)
            .filter(|(x, y)| content(ka.1, x) != content(ka.1, y))
            .count();
        if mismatches > 0 {
            println!("{ka:?}: {mismatches} records differ");
            same = false;
        }
        // Signed: replayed minus recorded, each from its capture's first record.
        drift.extend(
            ra.iter()
                .zip(rb)
                .map(|(x, y)| (ts(y) - b0) as i64 - (ts(x) - a0) as i64),
        );
    }
    if drift.is_empty() {
        eprintln!("error: no records to compare");
        std::process::exit(2);
    }
    let mut sorted = drift.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let summary = |shift: i64| {
        let mut d: Vec<u64> = drift.iter().map(|x| x.abs_diff(shift)).collect();
        d.sort_unstable();
        let q = |p: f64| d[((d.len() as f64 * p) as usize).min(d.len() - 1)];
        format!(
            "p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
            q(0.5),
            q(0.99),
            q(0.999),
            d[d.len() - 1]
        )
    };
    println!(
        "{} records compared: {}",
        drift.len(),
        if same {
            "the same records in the same order"
        } else {
            "they DIFFER"
        }
    );
    println!(
        "|replayed - recorded| time, each from its capture's first record: {}",
        summary(0)
    );
    println!(
        "|replayed - recorded| time, aligned at the median offset ({median} ns): {}",
        summary(median)
    );
    std::process::exit(i32::from(!same));
}

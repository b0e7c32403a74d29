use std::io::Write;
use std::path::{Path, PathBuf};

use alphapulse_bus::{Action, BookUpdate, Side, Trade};

use super::{fixed_point, import, TimeColumn};
use crate::plan::Stream;
use crate::source::capture::reader::CaptureFile;
use crate::source::market::BookReplica;

#[test]
fn decimals_become_fixed_point_exactly_or_not_at_all() {
    assert_eq!(fixed_point("1"), Ok(100_000_000));
    assert_eq!(fixed_point("0.5"), Ok(50_000_000));
    assert_eq!(fixed_point("60123.45"), Ok(6_012_345_000_000));
    assert_eq!(fixed_point("0.00000001"), Ok(1));
    assert_eq!(fixed_point("1.50000000000"), Ok(150_000_000));
    assert_eq!(fixed_point("1e-05"), Ok(1_000));
    assert_eq!(fixed_point("2.5E3"), Ok(250_000_000_000));
    assert_eq!(fixed_point("-0.25"), Ok(-25_000_000));
    assert_eq!(fixed_point("0"), Ok(0));
    assert!(fixed_point("0.000000001")
        .unwrap_err()
        .contains("more than the 8 decimals"));
    assert!(fixed_point("1e-9")
        .unwrap_err()
        .contains("more than the 8 decimals"));
    assert!(fixed_point("92233720368.54775808")
        .unwrap_err()
        .contains("does not fit"));
    assert!(fixed_point("1e30").unwrap_err().contains("does not fit"));
    for bad in ["", ".", "abc", "1.2.3", "1,5", "--1", "1e", "0x10"] {
        assert!(
            fixed_point(bad).unwrap_err().contains("not a decimal"),
            "{bad}"
        );
    }
}

fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if name.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
    } else {
        std::fs::write(&path, text).unwrap();
    }
    path
}

const TRADES: &str = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount
binance,BTCUSDT,1700000000000100,1700000000000150,1,buy,60000.5,0.01
binance,ETHUSDT,1700000000000200,1700000000000250,2,sell,3000.25,1.5
binance,BTCUSDT,1700000000000300,1700000000000350,3,sell,60000.4,0.002
";

const BOOK: &str = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
binance,BTCUSDT,1700000000000000,1700000000000010,true,bid,59999,1
binance,BTCUSDT,1700000000000000,1700000000000010,true,bid,59998,2
binance,BTCUSDT,1700000000000000,1700000000000010,true,ask,60001,1
binance,BTCUSDT,1700000000000400,1700000000000410,false,bid,59999,0
binance,BTCUSDT,1700000000000400,1700000000000410,false,ask,60002,3
binance,BTCUSDT,1700000000000400,1700000000000410,false,ask,60003,0
binance,BTCUSDT,1700000000000500,1700000000000510,true,ask,60005,4
";

fn records(c: &CaptureFile, stream: Stream) -> Vec<Vec<u8>> {
    let mut f = std::fs::File::open(&c.path).unwrap();
    let mut out = Vec::new();
    for chunk in &c.sources[&(0, stream)].chunks {
        let raw = c.read_chunk(&mut f, chunk).unwrap();
        let size = crate::source::capture::format::record_size(stream);
        out.extend(raw.chunks_exact(size).map(<[u8]>::to_vec));
    }
    out
}

#[test]
fn tardis_rows_become_records_and_books_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    let trades = file(dir.path(), "trades.csv.gz", TRADES);
    let book = file(dir.path(), "book.csv", BOOK);
    let out = dir.path().join("cap");
    let s = import(&[trades], &[book], &out, TimeColumn::Local).unwrap();
    assert_eq!((s.rows, s.trades, s.book_updates), (10, 3, 3));
    assert_eq!(s.exchanges, ["binance"]);
    assert_eq!(s.symbols, ["BTCUSDT", "ETHUSDT"]);
    let c = CaptureFile::open(&out).unwrap();
    assert_eq!(c.header.clock, "unix");
    let t: Vec<Trade> = records(&c, Stream::Trades)
        .iter()
        .map(|r| bytemuck::pod_read_unaligned(r))
        .collect();
    assert_eq!(t[0].send_ts_ns, 1_700_000_000_000_150_000);
    assert_eq!(
        (t[0].price, t[0].size, t[0].side),
        (6_000_050_000_000, 1_000_000, Side::Buy as u8)
    );
    assert_eq!(
        (t[1].symbol_id, t[1].trade_id, t[1].side),
        (1, 1, Side::Sell as u8)
    );
    assert_eq!((t[2].symbol_id, t[2].trade_id), (0, 2));
    let b: Vec<BookUpdate> = records(&c, Stream::Book)
        .iter()
        .map(|r| bytemuck::pod_read_unaligned(r))
        .collect();
    assert_eq!(b[0].level_count, 3);
    // The delete of a level that never existed (60003) changes nothing and is left out.
    assert_eq!(b[1].level_count, 2);
    assert_eq!(b[1].levels[0].action, Action::Delete as u8);
    // The second snapshot removes every level it does not list.
    assert_eq!(b[2].level_count, 4);
    let mut replica = BookReplica::new(2);
    for u in &b {
        replica.apply(u).unwrap();
    }
    let book = replica.book(0).unwrap();
    assert_eq!(book.best_ask(), Some((6_000_500_000_000, 400_000_000)));
    assert_eq!(book.best_bid(), None);
}

#[test]
fn bad_tardis_files_name_the_file_line_and_problem_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let check = |text: &str, expected: &[&str]| {
        let f = file(dir.path(), "t.csv", text);
        let e = import(&[f], &[], &out, TimeColumn::Local).unwrap_err();
        for x in expected {
            assert!(e.contains(x), "{e:?} lacks {x:?}");
        }
        assert!(!out.exists() && !dir.path().join("cap.partial").exists());
    };
    check(
        "exchange,symbol,timestamp,local_timestamp,id,side,price\nb,X,1,1,1,buy,1\n",
        &["t.csv: line 1", "no column \"amount\""],
    );
    check(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nb,X,1,1,1,buy,1,1\nb,X,1,2,1,buy,1.5x,1\n",
        &["t.csv: line 3", "price", "not a decimal"],
    );
    check(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nb,X,1,5,1,buy,1,1\nb,X,1,4,1,buy,1,1\n",
        &["t.csv: line 3", "goes back in time"],
    );
    check(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nb,X,1,5,1,unknown,1,1\n",
        &["t.csv: line 2", "side \"unknown\""],
    );
    check(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nb,X,1,5,1,buy,0.000000001,1\n",
        &["line 2", "more than the 8 decimals"],
    );
    check(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nb,X,1,5,1,buy,1\n",
        &["t.csv: line 2", "not a CSV row"],
    );
    check(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n",
        &["no rows"],
    );
    let book = file(
        dir.path(),
        "b.csv",
        "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\nb,X,1,1,false,buy,1,1\n",
    );
    let e = import(&[], &[book], &out, TimeColumn::Local).unwrap_err();
    assert!(
        e.contains("b.csv: line 2") && e.contains("side \"buy\" is not bid or ask"),
        "{e}"
    );
    // An existing output is never touched.
    std::fs::write(&out, b"mine").unwrap();
    let f = file(dir.path(), "t.csv", TRADES);
    let e = import(&[f], &[], &out, TimeColumn::Local).unwrap_err();
    assert!(e.contains("exists"), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), b"mine");
}

#[test]
fn a_snapshot_over_several_timestamps_is_one_book() {
    let dir = tempfile::tempdir().unwrap();
    let book = file(
        dir.path(),
        "b.csv",
        "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
x,S,1,10,false,bid,90,1
x,S,1,20,true,bid,100,1
x,S,1,21,true,ask,101,2
x,S,1,30,false,ask,102,3
",
    );
    let out = dir.path().join("cap");
    import(&[], &[book], &out, TimeColumn::Local).unwrap();
    let c = CaptureFile::open(&out).unwrap();
    let mut replica = BookReplica::new(1);
    for r in records(&c, Stream::Book) {
        let u: BookUpdate = bytemuck::pod_read_unaligned(&r);
        replica.apply(&u).unwrap();
    }
    let b = replica.book(0).unwrap();
    // The level before the snapshot is gone; both parts of the snapshot stay.
    assert_eq!(b.best_bid(), Some((100 * 100_000_000, 100_000_000)));
    assert_eq!(b.best_ask(), Some((101 * 100_000_000, 200_000_000)));
    assert_eq!(b.depth(), (1, 2));
}

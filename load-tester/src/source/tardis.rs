//! Importing Tardis.dev CSV files into a capture.
//!
//! Tardis' documented columns: `trades` files hold
//! `exchange,symbol,timestamp,local_timestamp,id,side,price,amount` (side `buy` or `sell`: the
//! aggressor), `incremental_book_L2` files hold
//! `exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount` (side `bid` or
//! `ask`; `amount` is the level's new size, 0 removes it; rows of one message share their
//! `local_timestamp`; a run of `is_snapshot=true` rows replaces the book, even when it spans
//! several timestamps). Timestamps are µs
//! since the Unix epoch. Files may be gzip-compressed (recognised by their first bytes).
//!
//! Exchange and symbol ids are given in order of first appearance, over all files, and their
//! names go into the capture's header (which is the mapping). Prices and amounts become the
//! bus's fixed point (`PRICE_SCALE`, `SIZE_SCALE`: 8 decimals) exactly: a value with more
//! decimals than that, or too large for 64 bits, is an error, never rounded. Every record of a
//! source must not go back in time; a message of more than 8 level changes becomes several
//! book updates with the same time.
//!
//! Memory: the CSV is streamed; what is kept is one chunk per source being filled, the
//! writer's queue, and each symbol's book (to turn a snapshot into the deletes it implies).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use alphapulse_bus::{Action, BookUpdate, Level, Record, Side, Trade, MAX_LEVELS, PRICE_SCALE};

use crate::plan::Stream;
use crate::source::capture::format::{Header, FORMAT_NAME};
use crate::source::capture::writer::{CaptureSummary, CaptureWriter};

/// Which timestamp of a row becomes the record's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    /// `local_timestamp`: when Tardis received the message (the files' order).
    Local,
    /// `timestamp`: the exchange's time.
    Exchange,
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows read.
    pub rows: u64,
    /// Trades written.
    pub trades: u64,
    /// Book updates written.
    pub book_updates: u64,
    /// Exchange names, by id.
    pub exchanges: Vec<String>,
    /// Symbol names, by id.
    pub symbols: Vec<String>,
    /// The capture.
    pub capture: CaptureSummary,
}

/// Where a bad row is, and what is wrong with it.
fn at(path: &Path, line: u64, problem: impl std::fmt::Display) -> String {
    format!("{}: line {line}: {problem}", path.display())
}

/// Parses a decimal (`123`, `-0.5`, `1.25e-3`) into an integer scaled by 10^8, exactly.
pub fn fixed_point(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a decimal number");
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (text, 0),
    };
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    if exponent.abs() > 100 {
        return Err(format!(
            "{text} does not fit the 64-bit fixed point of 8 decimals"
        ));
    }
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > 100 {
        return Err(format!(
            "{text} has more than the 8 decimals of the fixed point; it would be rounded"
        ));
    }
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // value = digits * 10^(exponent - frac.len()); scaled: * 10^8.
    let all = format!("{int}{frac}");
    let all = all.trim_start_matches('0');
    let shift = 8 + exponent - frac.len() as i32;
    let too_big = || format!("{text} does not fit the 64-bit fixed point of 8 decimals");
    let value: i128 = if all.is_empty() {
        0
    } else if shift >= 0 {
        let base: i128 = all.parse().map_err(|_| too_big())?;
        10i128
            .checked_pow(shift as u32)
            .and_then(|p| base.checked_mul(p))
            .ok_or_else(too_big)?
    } else {
        let cut = (-shift) as usize;
        let (keep, dropped) = if cut >= all.len() {
            ("", all)
        } else {
            all.split_at(all.len() - cut)
        };
        if dropped.bytes().any(|b| b != b'0') {
            return Err(format!(
                "{text} has more than the 8 decimals of the fixed point; it would be rounded"
            ));
        }
        if keep.is_empty() {
            0
        } else {
            keep.parse().map_err(|_| too_big())?
        }
    };
    let value = if negative { -value } else { value };
    i64::try_from(value).map_err(|_| too_big())
}

/// Opens `path`, decompressing it if it is gzip.
fn open(path: &Path) -> Result<Box<dyn Read>, String> {
    let file = File::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader
        .fill_buf()
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// `path` as a CSV reader past its header, and where `names` are in it (`flexible`: rows may
/// have fewer or more fields than the header).
fn open_csv(
    path: &Path,
    names: &[&str],
    flexible: bool,
) -> Result<(csv::Reader<Box<dyn Read>>, Columns), String> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(flexible)
        .from_reader(open(path)?);
    let headers = csv
        .headers()
        .map_err(|e| at(path, 1, format!("cannot read the header: {e}")))?
        .clone();
    let c = Columns::find(path, &headers, names)?;
    Ok((csv, c))
}

/// The columns a file must have, and where each is.
struct Columns {
    index: Vec<usize>,
}

impl Columns {
    fn find(path: &Path, headers: &csv::StringRecord, names: &[&str]) -> Result<Self, String> {
        let index = names
            .iter()
            .map(|n| {
                headers.iter().position(|h| h.trim() == *n).ok_or_else(|| {
                    at(
                        path,
                        1,
                        format!(
                            "no column {n:?} (Tardis files have {}; this header is {:?})",
                            names.join(","),
                            headers.iter().collect::<Vec<_>>().join(",")
                        ),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { index })
    }

    fn get<'r>(&self, row: &'r csv::StringRecord, i: usize) -> &'r str {
        row.get(self.index[i]).unwrap_or("").trim()
    }
}

/// The state of an import.
///
/// Invariants: `exchange_ids` and `symbol_ids` map every name of the files to its id (its
/// position in the header's lists);
/// `last_ts[(exchange, stream)]` is the time of that source's last record written; `books`
/// holds each (exchange, symbol)'s levels after every book update written.
struct Import {
    /// Where the records go.
    writer: CaptureWriter,
    /// Which of the files' timestamps becomes the send time; fixed.
    time: TimeColumn,
    /// Exchange name to id, in order of first appearance.
    exchange_ids: HashMap<String, u16>,
    /// Symbol name to id, in order of first appearance.
    symbol_ids: HashMap<String, u32>,
    /// Per source, the time of its last record written, ns; a row before it is refused.
    last_ts: HashMap<(u16, Stream), u64>,
    /// Per source, the sequence of its last record written.
    sequence: HashMap<(u16, Stream), u64>,
    /// Per (exchange, symbol), the id of its last trade.
    trade_ids: HashMap<(u16, u32), u64>,
    /// Per (exchange, symbol), its book's version after the last update written.
    versions: HashMap<(u16, u32), u64>,
    /// Per (exchange, symbol): (side byte, price) -> size.
    books: HashMap<(u16, u32), BTreeMap<(u8, i64), i64>>,
    /// Per (exchange, symbol): whether its last book message was part of a snapshot.
    in_snapshot: HashMap<(u16, u32), bool>,
    /// Rows read, over every file.
    rows: u64,
    /// Trades written.
    trades: u64,
    /// Book updates written.
    book_updates: u64,
}

const TRADE_COLUMNS: [&str; 8] = [
    "exchange",
    "symbol",
    "timestamp",
    "local_timestamp",
    "id",
    "side",
    "price",
    "amount",
];
const BOOK_COLUMNS: [&str; 8] = [
    "exchange",
    "symbol",
    "timestamp",
    "local_timestamp",
    "is_snapshot",
    "side",
    "price",
    "amount",
];

/// Most exchanges and symbols an import names (the ids' widths, and the replay's limits).
const MAX_EXCHANGES: usize = 256;
const MAX_SYMBOLS: usize = 10_000;

impl Import {
    fn exchange(&self, name: &str) -> Result<u16, String> {
        self.exchange_ids.get(name).copied().ok_or_else(|| {
            format!("exchange {name:?} was not there when the files were first read")
        })
    }

    fn symbol(&self, name: &str) -> Result<u32, String> {
        self.symbol_ids
            .get(name)
            .copied()
            .ok_or_else(|| format!("symbol {name:?} was not there when the files were first read"))
    }

    /// The record time of a row, ns, checked not to go back for its source.
    fn time(
        &mut self,
        local: &str,
        exchange_ts: &str,
        source: (u16, Stream),
    ) -> Result<u64, String> {
        let (name, text) = match self.time {
            TimeColumn::Local => ("local_timestamp", local),
            TimeColumn::Exchange => ("timestamp", exchange_ts),
        };
        let us: u64 = text
            .parse()
            .map_err(|_| format!("{name} {text:?} is not a whole number of microseconds"))?;
        let ns = us
            .checked_mul(1_000)
            .ok_or_else(|| format!("{name} {text} is too large"))?;
        let last = self.last_ts.entry(source).or_insert(0);
        if ns < *last {
            return Err(format!(
                "{name} {us} goes back in time (the previous row of this exchange's {} was at {}); \
                 files must be given in time order{}",
                source.1.name(),
                *last / 1_000,
                if self.time == TimeColumn::Exchange {
                    " (exchange timestamps may be out of order: try --time local)"
                } else {
                    ""
                }
            ));
        }
        *last = ns;
        Ok(ns)
    }

    fn next_sequence(&mut self, source: (u16, Stream)) -> u64 {
        let s = self.sequence.entry(source).or_insert(0);
        *s += 1;
        *s
    }

    fn trades_file(&mut self, path: &Path) -> Result<(), String> {
        let (mut csv, c) = open_csv(path, &TRADE_COLUMNS, false)?;
        let mut row = csv::StringRecord::new();
        loop {
            let line = csv.position().line();
            match csv.read_record(&mut row) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(at(path, line, format!("not a CSV row: {e}"))),
            }
            self.rows += 1;
            self.trade_row(&c, &row).map_err(|e| at(path, line, e))?;
        }
    }

    fn trade_row(&mut self, c: &Columns, row: &csv::StringRecord) -> Result<(), String> {
        let exchange = self.exchange(c.get(row, 0))?;
        let symbol = self.symbol(c.get(row, 1))?;
        let source = (exchange, Stream::Trades);
        let ts = self.time(c.get(row, 3), c.get(row, 2), source)?;
        let side = match c.get(row, 5) {
            "buy" => Side::Buy,
            "sell" => Side::Sell,
            other => {
                return Err(format!(
                    "side {other:?} is not buy or sell{}",
                    if other == "unknown" {
                        " (the exchange did not say which side was the aggressor; a trade \
                         record needs it)"
                    } else {
                        ""
                    }
                ))
            }
        };
        let price = fixed_point(c.get(row, 6)).map_err(|e| format!("price: {e}"))?;
        let size = fixed_point(c.get(row, 7)).map_err(|e| format!("amount: {e}"))?;
        if price <= 0 || size <= 0 {
            return Err(format!(
                "price {} and amount {} of a trade must be positive",
                c.get(row, 6),
                c.get(row, 7)
            ));
        }
        let trade_id = self.trade_ids.entry((exchange, symbol)).or_insert(0);
        *trade_id += 1;
        let mut t = Trade {
            sequence: 0,
            send_ts_ns: ts,
            exchange_id: exchange,
            side: side as u8,
            reserved0: 0,
            symbol_id: symbol,
            trade_id: *trade_id,
            price,
            size,
            book_version: self.versions.get(&(exchange, symbol)).copied().unwrap_or(0),
            checksum: 0,
        };
        t.sequence = self.next_sequence(source);
        t.seal();
        self.writer
            .push(exchange, Stream::Trades, bytemuck::bytes_of(&t));
        self.trades += 1;
        Ok(())
    }

    fn book_file(&mut self, path: &Path) -> Result<(), String> {
        let (mut csv, c) = open_csv(path, &BOOK_COLUMNS, false)?;
        let mut row = csv::StringRecord::new();
        // The message being gathered: its key (exchange, symbol, time, snapshot) and changes.
        let mut message: Option<(MessageKey, Vec<Change>)> = None;
        loop {
            let line = csv.position().line();
            let more = csv
                .read_record(&mut row)
                .map_err(|e| at(path, line, format!("not a CSV row: {e}")))?;
            if !more {
                if let Some((key, changes)) = message.take() {
                    self.book_message(key, &changes);
                }
                return Ok(());
            }
            self.rows += 1;
            let parsed = (|| -> Result<_, String> {
                let exchange = self.exchange(c.get(&row, 0))?;
                let symbol = self.symbol(c.get(&row, 1))?;
                let snapshot = match c.get(&row, 4) {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("is_snapshot {other:?} is not true or false")),
                };
                let side = match c.get(&row, 5) {
                    "bid" => Side::Buy as u8,
                    "ask" => Side::Sell as u8,
                    other => return Err(format!("side {other:?} is not bid or ask")),
                };
                let price = fixed_point(c.get(&row, 6)).map_err(|e| format!("price: {e}"))?;
                let size = fixed_point(c.get(&row, 7)).map_err(|e| format!("amount: {e}"))?;
                if price <= 0 || size < 0 {
                    return Err(format!(
                        "price {} must be positive and amount {} not negative",
                        c.get(&row, 6),
                        c.get(&row, 7)
                    ));
                }
                Ok((exchange, symbol, snapshot, side, price, size))
            })();
            let (exchange, symbol, snapshot, side, price, size) =
                parsed.map_err(|e| at(path, line, e))?;
            let same = message.as_ref().is_some_and(|((e, s, t, snap), _)| {
                (*e, *s, *snap) == (exchange, symbol, snapshot)
                    && *t / 1_000 == raw_time(&c, &row, self.time)
            });
            if !same {
                if let Some((key, changes)) = message.take() {
                    self.book_message(key, &changes);
                }
                let ts = self
                    .time(c.get(&row, 3), c.get(&row, 2), (exchange, Stream::Book))
                    .map_err(|e| at(path, line, e))?;
                message = Some(((exchange, symbol, ts, snapshot), Vec::new()));
            }
            if let Some((_, changes)) = message.as_mut() {
                changes.push((side, price, size));
            }
        }
    }

    /// Writes one message of level changes as book updates of up to [`MAX_LEVELS`] changes.
    fn book_message(&mut self, key: MessageKey, changes: &[Change]) {
        let (exchange, symbol, ts, snapshot) = key;
        let book = self.books.entry((exchange, symbol)).or_default();
        let mut levels: Vec<Level> = Vec::with_capacity(changes.len());
        // A snapshot is the whole book, and may come in several messages: its first replaces
        // the book (what it does not list is gone), the rest of it adds to it.
        let was = self.in_snapshot.insert((exchange, symbol), snapshot);
        if snapshot && was != Some(true) {
            let listed: std::collections::HashSet<(u8, i64)> =
                changes.iter().map(|&(s, p, _)| (s, p)).collect();
            let gone: Vec<(u8, i64)> = book
                .keys()
                .filter(|k| !listed.contains(k))
                .copied()
                .collect();
            for (side, price) in gone {
                book.remove(&(side, price));
                levels.push(level(side, Action::Delete, price, 0));
            }
        }
        for &(side, price, size) in changes {
            let action = match (book.contains_key(&(side, price)), size) {
                (true, 0) => Action::Delete,
                (true, _) => Action::Update,
                (false, 0) => continue, // removing what is not there changes nothing
                (false, _) => Action::Insert,
            };
            if size == 0 {
                book.remove(&(side, price));
            } else {
                book.insert((side, price), size);
            }
            levels.push(level(side, action, price, size));
        }
        for part in levels.chunks(MAX_LEVELS) {
            let version = self.versions.entry((exchange, symbol)).or_insert(0);
            let mut u = BookUpdate {
                send_ts_ns: ts,
                exchange_id: exchange,
                level_count: part.len() as u8,
                symbol_id: symbol,
                prev_version: *version,
                version: *version + 1,
                ..BookUpdate::default()
            };
            *version += 1;
            u.levels[..part.len()].copy_from_slice(part);
            u.sequence = self.next_sequence((exchange, Stream::Book));
            u.seal();
            self.writer
                .push(exchange, Stream::Book, bytemuck::bytes_of(&u));
            self.book_updates += 1;
        }
    }
}

/// A book message's (exchange id, symbol id, time in ns, is a snapshot).
type MessageKey = (u16, u32, u64, bool);
/// One row of a book message: (side byte, price, size), fixed point.
type Change = (u8, i64, i64);

/// The row's time column as written, µs (0 if unreadable: the caller checks it).
fn raw_time(c: &Columns, row: &csv::StringRecord, time: TimeColumn) -> u64 {
    let i = match time {
        TimeColumn::Local => 3,
        TimeColumn::Exchange => 2,
    };
    c.get(row, i).parse().unwrap_or(u64::MAX)
}

fn level(side: u8, action: Action, price: i64, size: i64) -> Level {
    Level {
        price,
        size,
        side,
        action: action as u8,
        reserved: [0; 6],
    }
}

/// Imports `trades` and `book` files (each list in time order) into a new capture at `output`.
/// On any error nothing is left at `output` (nor its partial file), and the message names the
/// file, the line and the problem.
pub fn import(
    trades: &[PathBuf],
    book: &[PathBuf],
    output: &Path,
    time: TimeColumn,
) -> Result<ImportSummary, String> {
    debug_assert_eq!(PRICE_SCALE, 100_000_000);
    if output.exists() {
        return Err(format!(
            "{}: exists; an import never overwrites a file (choose another name or remove it)",
            output.display()
        ));
    }
    let origin = trades
        .iter()
        .chain(book)
        .map(|p| {
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        })
        .collect::<Vec<_>>()
        .join(" ");
    // The header is written first, and must hold the names only known at the end: the
    // import reads every file's names in a first pass (cheap next to parsing every row).
    let (exchanges, symbols) = names(trades, book)?;
    if exchanges.len() > MAX_EXCHANGES || symbols.len() > MAX_SYMBOLS {
        return Err(format!(
            "the files name {} exchanges and {} symbols; a capture takes at most \
             {MAX_EXCHANGES} and {MAX_SYMBOLS}",
            exchanges.len(),
            symbols.len()
        ));
    }
    for e in &exchanges {
        alphapulse_bus::check_name(e)
            .map_err(|err| format!("exchange {e:?} cannot name a ring of the bus: {err}"))?;
    }
    if let Some(s) = symbols.iter().find(|s| s.is_empty()) {
        return Err(format!("symbol {s:?}: every row needs a symbol"));
    }
    let header = Header {
        format: FORMAT_NAME.into(),
        tool: format!("load-tester {} import-tardis", env!("CARGO_PKG_VERSION")),
        created_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        exchanges: exchanges.clone(),
        symbols: symbols.clone(),
        origin: format!("tardis {origin}"),
        clock: "unix".into(),
    };
    let writer = CaptureWriter::create(output, &header, || {}).map_err(|e| e.to_string())?;
    let mut im = Import {
        writer,
        time,
        exchange_ids: exchanges.iter().cloned().zip(0..).collect(),
        symbol_ids: symbols.iter().cloned().zip(0..).collect(),
        last_ts: HashMap::new(),
        sequence: HashMap::new(),
        trade_ids: HashMap::new(),
        versions: HashMap::new(),
        books: HashMap::new(),
        in_snapshot: HashMap::new(),
        rows: 0,
        trades: 0,
        book_updates: 0,
    };
    let read = trades
        .iter()
        .try_for_each(|p| im.trades_file(p))
        .and_then(|()| book.iter().try_for_each(|p| im.book_file(p)));
    if let Err(e) = read {
        im.writer.abort();
        return Err(e);
    }
    if im.trades + im.book_updates == 0 {
        im.writer.abort();
        return Err("the files hold no rows: nothing to import".into());
    }
    let capture = im.writer.finish().map_err(|e| e.to_string())?;
    Ok(ImportSummary {
        rows: im.rows,
        trades: im.trades,
        book_updates: im.book_updates,
        exchanges,
        symbols,
        capture,
    })
}

/// Every exchange and symbol name of the files, in order of first appearance.
fn names(trades: &[PathBuf], book: &[PathBuf]) -> Result<(Vec<String>, Vec<String>), String> {
    let mut exchanges: Vec<String> = Vec::new();
    let mut symbols: Vec<String> = Vec::new();
    let (mut seen_e, mut seen_s) = (HashMap::new(), HashMap::new());
    for path in trades.iter().chain(book) {
        let (mut csv, c) = open_csv(path, &["exchange", "symbol"], true)?;
        let mut row = csv::StringRecord::new();
        loop {
            let line = csv.position().line();
            match csv.read_record(&mut row) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(at(path, line, format!("not a CSV row: {e}"))),
            }
            let (e, s) = (c.get(&row, 0), c.get(&row, 1));
            if !seen_e.contains_key(e) {
                seen_e.insert(e.to_string(), ());
                exchanges.push(e.to_string());
            }
            if !seen_s.contains_key(s) {
                seen_s.insert(s.to_string(), ());
                symbols.push(s.to_string());
            }
        }
    }
    Ok((exchanges, symbols))
}

#[cfg(test)]
mod tests;

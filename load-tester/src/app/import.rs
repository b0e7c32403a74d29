//! `load-tester import-tardis`: Tardis.dev CSV files into a capture file.

use super::error;
use crate::config::cli::{ImportTardisArgs, TardisTime};
use crate::plan::text::thousands;
use crate::source::tardis::{import, TimeColumn};

/// Runs the import; returns the exit status.
pub(super) fn run(args: &ImportTardisArgs) -> i32 {
    let time = match args.time {
        TardisTime::Local => TimeColumn::Local,
        TardisTime::Exchange => TimeColumn::Exchange,
    };
    match import(&args.trades, &args.book, &args.output, time) {
        Ok(s) => {
            println!(
                "Imported {} rows: {} trades and {} book updates of {} exchange(s) ({}) and {} symbol(s) into {} ({:.1} MB, {} chunks)",
                thousands(s.rows),
                thousands(s.trades),
                thousands(s.book_updates),
                s.exchanges.len(),
                s.exchanges.join(", "),
                s.symbols.len(),
                args.output.display(),
                s.capture.bytes as f64 / 1e6,
                s.capture.chunks
            );
            crate::exit::OK
        }
        Err(e) => error(e),
    }
}

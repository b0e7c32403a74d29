//! Names of the simulated symbols and exchanges, and the reference prices behind them.
//!
//! Symbol ids are indexes into [`symbol_names`]: the first few hundred are real base/quote pairs
//! in rough order of popularity ("BTC/USD", "ETH/USD", "BTC/USDT", ...), the rest are synthetic
//! pairs with made-up five-letter bases ("XAAAA/USD", ...). Everything here is a pure function of
//! the index, so every exchange and every process agrees on what symbol `i` is and roughly what it
//! costs.

use alphapulse_bus::PRICE_SCALE;

/// Base assets with an approximate USD price, most popular first.
const BASES: &[(&str, f64)] = &[
    ("BTC", 60_000.0),
    ("ETH", 3_000.0),
    ("SOL", 150.0),
    ("BNB", 550.0),
    ("XRP", 0.55),
    ("DOGE", 0.12),
    ("ADA", 0.45),
    ("AVAX", 30.0),
    ("TRX", 0.12),
    ("DOT", 6.5),
    ("LINK", 14.0),
    ("MATIC", 0.7),
    ("TON", 6.0),
    ("SHIB", 0.000_02),
    ("LTC", 75.0),
    ("BCH", 400.0),
    ("NEAR", 5.0),
    ("UNI", 8.0),
    ("ATOM", 8.0),
    ("XLM", 0.1),
    ("ETC", 25.0),
    ("APT", 8.0),
    ("ARB", 1.0),
    ("OP", 2.0),
    ("FIL", 5.0),
    ("ICP", 10.0),
    ("HBAR", 0.08),
    ("VET", 0.03),
    ("INJ", 25.0),
    ("AAVE", 100.0),
    ("MKR", 2_500.0),
    ("SUI", 1.0),
    ("SEI", 0.5),
    ("RNDR", 7.0),
    ("GRT", 0.25),
    ("ALGO", 0.18),
    ("EGLD", 35.0),
    ("SAND", 0.4),
    ("MANA", 0.4),
    ("AXS", 7.0),
    ("XTZ", 0.9),
    ("EOS", 0.7),
    ("FTM", 0.6),
    ("THETA", 1.8),
    ("KAS", 0.15),
    ("STX", 2.0),
    ("IMX", 2.0),
    ("RUNE", 5.0),
    ("CRV", 0.4),
    ("LDO", 2.0),
];

/// Quote assets: name, approximate USD price, and how far down the popularity order its pairs
/// start (added to the base's rank to sort the pairs).
const QUOTES: &[(&str, f64, usize)] = &[
    ("USD", 1.0, 0),
    ("USDT", 1.0, 1),
    ("USDC", 1.0, 6),
    ("EUR", 1.08, 12),
    ("BTC", 60_000.0, 20),
    ("ETH", 3_000.0, 30),
];

/// Quotes of the synthetic pairs, cycled.
const SYNTHETIC_QUOTES: &[&str] = &["USD", "USDT", "USDC"];

/// Real pairs whose price would be below this many fixed-point units (1e-5) are left out: they do
/// not trade anywhere and their tick would be too coarse.
const MIN_REAL_PRICE_UNITS: f64 = 1_000.0;

/// The well-known exchanges, in the order [`exchange_names`] hands them out.
const EXCHANGES: &[&str] = &[
    "binance", "coinbase", "kraken", "bybit", "okx", "bitfinex", "bitstamp", "gemini", "kucoin",
    "htx",
];

/// What the simulator needs to know about one symbol.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PairInfo {
    /// "BASE/QUOTE".
    pub name: String,
    /// Reference price, fixed-point ([`PRICE_SCALE`]), > 0.
    pub price: i64,
    /// Approximate USD value of one unit of the base asset (to size lots).
    pub base_usd: f64,
}

/// The real pairs, in popularity order: `(base index, quote index)`.
fn real_pairs() -> Vec<(usize, usize)> {
    let mut pairs = Vec::with_capacity(BASES.len() * QUOTES.len());
    for (b, &(base, base_usd)) in BASES.iter().enumerate() {
        for (q, &(quote, quote_usd, _)) in QUOTES.iter().enumerate() {
            let units = base_usd / quote_usd * PRICE_SCALE as f64;
            if base != quote && units >= MIN_REAL_PRICE_UNITS {
                pairs.push((b, q));
            }
        }
    }
    // Stable sort: ties keep base-major order, so "ETH/USD" comes before "BTC/USDT".
    pairs.sort_by_key(|&(b, q)| (b + QUOTES[q].2, q));
    pairs
}

/// A 64-bit mix (splitmix64's finaliser): deterministic pseudo-randomness from an index.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Base of synthetic pair number `n`: 'X' then at least four letters, the base-26 digits of `n`.
/// Distinct for distinct `n`, and never one of the real bases (none has five letters starting
/// with 'X').
fn synthetic_base(n: usize) -> String {
    let mut digits = Vec::with_capacity(8);
    let mut v = n;
    loop {
        digits.push(b'A' + (v % 26) as u8);
        v /= 26;
        if v == 0 && digits.len() >= 4 {
            break;
        }
    }
    let mut s = String::with_capacity(digits.len() + 1);
    s.push('X');
    s.extend(digits.iter().rev().map(|&d| char::from(d)));
    s
}

/// The first `count` symbols with their reference data.
pub(crate) fn pair_infos(count: usize) -> Vec<PairInfo> {
    let real = real_pairs();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        if let Some(&(b, q)) = real.get(i) {
            let (base, base_usd) = BASES[b];
            let (quote, quote_usd, _) = QUOTES[q];
            out.push(PairInfo {
                name: format!("{base}/{quote}"),
                price: (base_usd / quote_usd * PRICE_SCALE as f64).round() as i64,
                base_usd,
            });
        } else {
            let n = i - real.len();
            let base = synthetic_base(n / SYNTHETIC_QUOTES.len());
            let quote = SYNTHETIC_QUOTES[n % SYNTHETIC_QUOTES.len()];
            // The same base has the same price against every quote: a mantissa of 1..=9 times
            // 10^-3..=10^3 USD, picked by a hash of the base.
            let h = mix64((n / SYNTHETIC_QUOTES.len()) as u64 ^ 0x5EED_0F5E_1EC7);
            let mantissa = 1 + (h % 9) as i64;
            let exponent = ((h >> 8) % 7) as u32; // 10^(exponent - 3) USD
            let price = mantissa * PRICE_SCALE * 10i64.pow(exponent) / 1_000;
            out.push(PairInfo {
                name: format!("{base}/{quote}"),
                price,
                base_usd: price as f64 / PRICE_SCALE as f64,
            });
        }
    }
    out
}

/// `count` unique symbol names like "BTC/USD" and "ETH/USDT": real base/quote pairs first, in
/// rough order of popularity, then synthetic ones ("XAAAA/USD", "XAAAA/USDT", ...).
///
/// Deterministic, and unique for any `count` (tested up to 100 000). Symbol id `i` is the index
/// of its name here.
pub fn symbol_names(count: usize) -> Vec<String> {
    pair_infos(count).into_iter().map(|p| p.name).collect()
}

/// `count` unique exchange names: "binance", "coinbase", "kraken", ... then "exchange-11",
/// "exchange-12", ... Only `[a-z0-9-]`, so each is a valid ring file name prefix.
pub fn exchange_names(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match EXCHANGES.get(i) {
            Some(name) => (*name).to_owned(),
            None => format!("exchange-{}", i + 1),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::source::market::symbols::*;
    use std::collections::HashSet;

    fn looks_like_pair(name: &str) -> bool {
        let Some((base, quote)) = name.split_once('/') else {
            return false;
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 6
                && s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        ok(base) && ok(quote) && base != quote
    }

    #[test]
    fn symbols_are_unique_and_look_like_pairs() {
        for count in [0, 1, 20, 298, 299, 1000, 100_000] {
            let names = symbol_names(count);
            assert_eq!(names.len(), count);
            let unique: HashSet<&String> = names.iter().collect();
            assert_eq!(unique.len(), count, "duplicates among {count} symbols");
            for name in &names {
                assert!(looks_like_pair(name), "{name:?} is not BASE/QUOTE");
            }
        }
    }

    #[test]
    fn symbols_start_with_the_popular_pairs_and_are_stable() {
        let names = symbol_names(20);
        assert_eq!(&names[..4], ["BTC/USD", "ETH/USD", "BTC/USDT", "SOL/USD"]);
        assert!(names.iter().any(|n| n == "ETH/USDT"));
        // A prefix of a longer list: the ids of the first symbols do not depend on the count.
        assert_eq!(symbol_names(1000)[..20], names[..]);
    }

    #[test]
    fn reference_prices_are_plausible() {
        let infos = pair_infos(5000);
        assert_eq!(infos[0].price, 60_000 * PRICE_SCALE);
        for p in &infos {
            assert!(p.price >= 1_000, "{} priced {}", p.name, p.price);
            assert!(
                p.price <= 100_000 * PRICE_SCALE,
                "{} priced {}",
                p.name,
                p.price
            );
            assert!(p.base_usd > 0.0);
        }
    }

    #[test]
    fn exchange_names_are_unique_and_file_name_safe() {
        let names = exchange_names(500);
        assert_eq!(&names[..3], ["binance", "coinbase", "kraken"]);
        assert_eq!(names[10], "exchange-11");
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        for name in &names {
            assert!(!name.is_empty());
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name:?}"
            );
            alphapulse_bus::check_name(&format!("{name}.trades")).unwrap();
        }
    }
}

//! The one histogram configuration every latency of a run is recorded in, and its standard
//! serialized form: HdrHistogram's V2 compressed ("deflate") encoding, base64 in text.
//!
//! Histograms of different configuration cannot be added without loss (their buckets differ),
//! so everything that merges histograms checks the configuration first
//! ([`HistogramConfig::of`]) and refuses a mismatch.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Lowest discernible value of every latency histogram, ns.
pub const LOWEST_NS: u64 = 1;
/// Largest value a latency histogram tracks, ns (one minute); larger values are recorded as
/// this and counted as saturated.
pub const HIGHEST_NS: u64 = 60_000_000_000;
/// Significant decimal digits of every histogram (0.1% value resolution).
pub const SIGFIG: u8 = 3;

/// Largest encoded histogram accepted from another process, bytes. A histogram of this
/// configuration has 27,648 counts; even uncompressed with 9-byte counts it stays below this.
pub const MAX_ENCODED_BYTES: usize = 1 << 20;

/// A fresh latency histogram: [`LOWEST_NS`] to [`HIGHEST_NS`], [`SIGFIG`] significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIG).expect("constant bounds are valid")
}

/// What makes two histograms addable without loss: the same bounds and precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramConfig {
    /// Lowest discernible value.
    pub lowest: u64,
    /// Highest trackable value.
    pub highest: u64,
    /// Significant decimal digits.
    pub sigfig: u8,
}

impl HistogramConfig {
    /// The configuration of every histogram this tester records.
    pub const STANDARD: HistogramConfig = HistogramConfig {
        lowest: LOWEST_NS,
        highest: HIGHEST_NS,
        sigfig: SIGFIG,
    };

    /// The configuration of `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            lowest: h.low(),
            highest: h.high(),
            sigfig: h.sigfig(),
        }
    }
}

impl std::fmt::Display for HistogramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}..{} ns, {} significant digits",
            self.lowest, self.highest, self.sigfig
        )
    }
}

/// Serializes `h` in HdrHistogram's V2 compressed form, base64 (standard alphabet, padded).
pub fn encode(h: &Histogram<u64>) -> String {
    base64::engine::general_purpose::STANDARD.encode(encode_bytes(h))
}

/// Serializes `h` in HdrHistogram's V2 compressed form, as bytes.
pub fn encode_bytes(h: &Histogram<u64>) -> Vec<u8> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serializing into memory cannot fail");
    buf
}

/// Serializes `h` in HdrHistogram's V2 form without compression, as bytes: what the
/// distributed run's wire carries. Counts are already run-length and LEB128 encoded; skipping
/// deflate costs a few kilobytes per histogram and saves the CPU that would otherwise be taken
/// from a generator sharing the core, on both sides.
pub fn encode_plain_bytes(h: &Histogram<u64>) -> Vec<u8> {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("serializing into memory cannot fail");
    buf
}

/// The cookie of an uncompressed V2 histogram (the base cookie with the word-size bits, as
/// every V2 encoder since HdrHistogram 2.1 writes it).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;

/// The configuration an uncompressed V2 histogram announces in its header (cookie, payload
/// length, normalizing offset, significant digits, lowest, highest, all big-endian), read
/// before anything is allocated for it; `None` for another encoding.
fn plain_header(bytes: &[u8]) -> Option<Result<HistogramConfig, String>> {
    let u32_at = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    };
    let u64_at = |i: usize| {
        bytes
            .get(i..i + 8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
    };
    if u32_at(0)? != V2_COOKIE {
        return None;
    }
    Some(match (u32_at(12), u64_at(16), u64_at(24)) {
        (Some(sigfig), Some(lowest), Some(highest)) => Ok(HistogramConfig {
            lowest,
            highest,
            sigfig: u8::try_from(sigfig).unwrap_or(u8::MAX),
        }),
        _ => Err("histogram header is truncated".to_string()),
    })
}

/// Decodes what [`encode_plain_bytes`] produced and nothing else: the distributed wire's
/// histograms, whose configuration is checked from the header before anything is allocated (a
/// compressed one would have to be inflated first).
pub fn decode_plain_bytes(bytes: &[u8]) -> Result<Histogram<u64>, String> {
    match plain_header(bytes) {
        Some(_) => decode_bytes(bytes),
        None => Err("histogram is not HdrHistogram's uncompressed V2 encoding".into()),
    }
}

/// Decodes what [`encode_bytes`] or [`encode_plain_bytes`] produced (any V2 or V2-deflate
/// histogram), refusing input over [`MAX_ENCODED_BYTES`] and histograms of another
/// configuration than [`HistogramConfig::STANDARD`] (an uncompressed one before it is decoded).
pub fn decode_bytes(bytes: &[u8]) -> Result<Histogram<u64>, String> {
    if bytes.len() > MAX_ENCODED_BYTES {
        return Err(format!(
            "histogram of {} bytes is larger than any this tester writes",
            bytes.len()
        ));
    }
    if let Some(header) = plain_header(bytes) {
        let config = header?;
        if config != HistogramConfig::STANDARD {
            return Err(format!(
                "histogram of {config}, not the {} every latency is recorded in",
                HistogramConfig::STANDARD
            ));
        }
    }
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("histogram does not decode: {e:?}"))?;
    let config = HistogramConfig::of(&h);
    if config != HistogramConfig::STANDARD {
        return Err(format!(
            "histogram of {config}, not the {} every latency is recorded in",
            HistogramConfig::STANDARD
        ));
    }
    Ok(h)
}

/// Decodes what [`encode`] produced (or any V2 / V2-deflate histogram, base64), refusing input
/// over [`MAX_ENCODED_BYTES`] and histograms whose configuration is not
/// [`HistogramConfig::STANDARD`].
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    if text.len() > MAX_ENCODED_BYTES * 4 / 3 + 4 {
        return Err(format!(
            "histogram of {} characters is larger than any this tester writes",
            text.len()
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    decode_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use crate::report::histogram::{
        decode, decode_bytes, encode, encode_plain_bytes, new_histogram,
    };

    #[test]
    fn histograms_round_trip_through_text() {
        let mut h = new_histogram();
        for v in [1, 100, 1_000, 123_456, 9_999_999] {
            h.record(v).unwrap();
        }
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert!(decode("not base64!").is_err());
        assert!(decode("aGVsbG8=").is_err());
    }

    #[test]
    fn another_configuration_is_refused() {
        let other = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1_000_000, 2).unwrap();
        let e = decode(&encode(&other)).unwrap_err();
        assert!(e.contains("2 significant digits"), "{e}");
    }

    #[test]
    fn plain_bytes_round_trip_and_a_foreign_header_is_refused_before_decoding() {
        let mut h = new_histogram();
        for v in [3, 77, 5_000, 42_000_000] {
            h.record(v).unwrap();
        }
        assert_eq!(decode_bytes(&encode_plain_bytes(&h)).unwrap(), h);
        // A header announcing a huge, precise histogram: refused from the header alone.
        let mut bad = encode_plain_bytes(&h);
        bad[12..16].copy_from_slice(&5u32.to_be_bytes());
        bad[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        let e = decode_bytes(&bad).unwrap_err();
        assert!(e.contains("5 significant digits"), "{e}");
        let e = decode_bytes(&bad[..20]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }
}

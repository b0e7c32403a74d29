//! O(1) sampling of a symbol id with Zipf-like popularity (Walker/Vose alias method, in integer
//! arithmetic so that it is bit-for-bit deterministic on every platform).

/// Samples `0..n` with weight proportional to `1 / (i + 1)`: symbol 0 ("BTC/USD") is the most
/// active, as on real exchanges.
#[derive(Debug, Clone)]
pub(crate) struct SymbolPicker {
    /// Per bucket: acceptance threshold in the high 32 bits, alias in the low 32 bits.
    table: Vec<u64>,
}

impl SymbolPicker {
    /// A picker over `0..n`; `n` must be in `1..=u32::MAX`.
    pub(crate) fn zipf(n: u32) -> Self {
        assert!(n > 0, "no symbols to pick from");
        let len = n as usize;
        // Weights scaled so that the biggest is 2^40: exact integers, no rounding differences.
        let weights: Vec<u128> = (0..len).map(|i| (1u128 << 40) / (i as u128 + 1)).collect();
        let total: u128 = weights.iter().sum();
        // Scaled probabilities q_i = w_i * n, compared with the average `total`.
        let mut q: Vec<u128> = weights.iter().map(|w| w * len as u128).collect();
        let mut table: Vec<u64> = (0..len as u64).collect(); // threshold 0, alias self
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..len).partition(|&i| q[i] < total);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            // P(keep s) = q_s / total, as a 32-bit threshold.
            let threshold = ((q[s] << 32) / total) as u64;
            table[s] = (threshold << 32) | l as u64;
            q[l] = q[l] + q[s] - total;
            if q[l] < total {
                large.pop();
                small.push(l);
            }
        }
        // What is left keeps itself with probability 1 (rounding leftovers included).
        for i in small.into_iter().chain(large) {
            table[i] = (u64::from(u32::MAX) << 32) | i as u64;
        }
        Self { table }
    }

    /// The id picked by 64 random bits.
    #[inline]
    pub(crate) fn sample(&self, r: u64) -> u32 {
        let n = self.table.len() as u64;
        let i = ((r >> 32) * n) >> 32;
        let entry = self.table[i as usize];
        if (r as u32) < (entry >> 32) as u32 {
            i as u32
        } else {
            entry as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::source::market::picker::*;

    #[test]
    fn frequencies_follow_the_weights() {
        let n = 20u32;
        let picker = SymbolPicker::zipf(n);
        let mut counts = vec![0u64; n as usize];
        let mut x = 1u64;
        let draws = 2_000_000u64;
        for _ in 0..draws {
            x = crate::source::market::symbols::mix64(x);
            counts[picker.sample(x) as usize] += 1;
        }
        let h: f64 = (1..=n).map(|i| 1.0 / f64::from(i)).sum();
        for (i, &c) in counts.iter().enumerate() {
            let expected = draws as f64 / (i as f64 + 1.0) / h;
            let err = (c as f64 - expected).abs() / expected;
            assert!(err < 0.03, "symbol {i}: {c} draws, expected {expected:.0}");
        }
    }

    #[test]
    fn one_symbol_and_many() {
        let one = SymbolPicker::zipf(1);
        assert!([0, u64::MAX, 12345].iter().all(|&r| one.sample(r) == 0));
        let many = SymbolPicker::zipf(100_000);
        let mut x = 7u64;
        for _ in 0..10_000 {
            x = crate::source::market::symbols::mix64(x);
            assert!(many.sample(x) < 100_000);
        }
    }
}

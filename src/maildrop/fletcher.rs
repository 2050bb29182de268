//! A fast content sum: Fletcher's checksum over 32-bit words modulo a prime, for telling
//! whether bytes pop3d saw are still the bytes a file holds (the journal's recovery, and a
//! message streamed by RETR). Not a cryptographic digest: `Fletcher` says what it notices.

/// Fletcher's checksum of `data` (see `Fletcher`).
pub(crate) fn fletcher64(data: &[u8]) -> [u8; 16] {
    let mut sum = Fletcher::default();
    sum.update(data);
    sum.finish()
}

/// The prime modulus of the Fletcher sums: the smallest prime above 2^32, so that every
/// 32-bit word is its own residue and no difference between two words is 0 modulo it.
const FLETCHER_PRIME: u64 = (1 << 32) + 15;

/// Words summed between two reductions modulo `FLETCHER_PRIME`: with both sums below the
/// prime before, the weighted one stays below 2^64 for 2^15 words of at most 2^32 - 1.
const FLETCHER_RUN: usize = 1 << 15;

/// Fletcher's checksum over little-endian 32-bit words (the last one zero-padded), modulo
/// `FLETCHER_PRIME`: a plain sum A and a position-weighted sum B, with the length. What it
/// notices for sure: any change of the length, and any change confined to one or two words
/// of a range shorter than the prime in words (16 GiB): a word's difference is never 0
/// modulo the prime, and two differences that cancel in A cancel in B only if their
/// positions are a multiple of the prime apart. Other changes (a restored backup, a shifted
/// region) pass only if both sums agree by chance, odds of about 2^-64 for unrelated bytes.
/// It is no defence against bytes crafted to collide: the mbox is writable only by its
/// owner and delivery agents, who need none, and a journal is trusted only if its owner's.
/// Data may come in pieces of any length.
#[derive(Default)]
pub(crate) struct Fletcher {
    a: u64,
    b: u64,
    len: u64,
    /// Bytes of a word not yet complete, and how many.
    pending: [u8; 4],
    pending_len: usize,
}

impl Fletcher {
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.pending_len > 0 {
            let take = (4 - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < 4 {
                return;
            }
            let word = self.pending;
            self.pending_len = 0;
            self.add_words(&word);
        }
        let whole = data.len() / 4 * 4;
        self.add_words(&data[..whole]);
        let rest = &data[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// Adds whole words, reducing after every `FLETCHER_RUN` of them.
    fn add_words(&mut self, words: &[u8]) {
        for run in words.chunks(4 * FLETCHER_RUN) {
            for c in run.chunks_exact(4) {
                self.a += u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                self.b += self.a;
            }
            self.a %= FLETCHER_PRIME;
            self.b %= FLETCHER_PRIME;
        }
    }

    /// A and B (each below 2^33) in 5 bytes apiece, then the length in 6.
    pub(crate) fn finish(mut self) -> [u8; 16] {
        if self.pending_len > 0 {
            let mut w = [0u8; 4];
            w[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
            self.a = (self.a + u64::from(u32::from_le_bytes(w))) % FLETCHER_PRIME;
            self.b = (self.b + self.a) % FLETCHER_PRIME;
        }
        let mut out = [0u8; 16];
        out[..5].copy_from_slice(&self.a.to_le_bytes()[..5]);
        out[5..10].copy_from_slice(&self.b.to_le_bytes()[..5]);
        out[10..].copy_from_slice(&self.len.to_le_bytes()[..6]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn streamed_fletcher_equals_the_one_piece_sum() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        for cut in [0, 1, 3, 512, 513, 999, 1000] {
            let mut sum = Fletcher::default();
            sum.update(&data[..cut]);
            sum.update(&data[cut..]);
            assert_eq!(sum.finish(), fletcher64(&data), "cut at {cut}");
        }
        let mut sum = Fletcher::default();
        for byte in data.chunks(1) {
            sum.update(byte);
        }
        assert_eq!(sum.finish(), fletcher64(&data), "a byte at a time");
    }

    /// The sum modulo 2^64 missed this: the top bit of two words of the same index parity
    /// flipped (each adds 2^63 to the plain sum and an even multiple of it to the weighted one).
    #[test]
    fn fletcher_notices_two_flipped_top_bits() {
        let a: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut b = a.clone();
        b[7] ^= 0x80;
        b[23] ^= 0x80;
        assert_ne!(fletcher64(&a), fletcher64(&b));
    }

    /// Every change confined to one or two 32-bit words is noticed (the modulus is a prime
    /// above every word, so no word difference vanishes and two only cancel in both sums
    /// when they are a multiple of the prime apart); checked here on random ones, with the
    /// extreme word values that alias when the modulus is below 2^32.
    #[test]
    fn fletcher_notices_every_change_of_one_or_two_words() {
        let mut rng = Rng(0xf1e7);
        let base: Vec<u8> = (0..8192).map(|_| rng.next() as u8).collect();
        let words = base.len() / 4;
        let extremes = [
            0u32,
            1,
            4,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_fffb,
            0xffff_ffff,
        ];
        for round in 0..20_000 {
            let mut changed = base.clone();
            let count = 1 + round % 2;
            for _ in 0..count {
                let at = 4 * rng.below(words);
                let word = if rng.below(3) == 0 {
                    extremes[rng.below(extremes.len())]
                } else {
                    rng.below(u32::MAX as usize) as u32
                };
                changed[at..at + 4].copy_from_slice(&word.to_le_bytes());
            }
            if changed != base {
                assert_ne!(fletcher64(&base), fletcher64(&changed), "round {round}");
            }
        }
        // A word of zeros becoming the value that is zero modulo a prime below 2^32.
        let zeros = vec![0u8; 64];
        let mut aliased = zeros.clone();
        aliased[..4].copy_from_slice(&0xffff_fffb_u32.to_le_bytes());
        assert_ne!(fletcher64(&zeros), fletcher64(&aliased));
    }

    #[test]
    fn fletcher_notices_a_changed_sector() {
        let a = vec![7u8; 4096];
        let mut b = a.clone();
        b[1000] = 8;
        assert_ne!(fletcher64(&a), fletcher64(&b));
        assert_ne!(fletcher64(&a[..4095]), fletcher64(&a));
        assert_eq!(fletcher64(&a), fletcher64(&a.clone()));
    }
}

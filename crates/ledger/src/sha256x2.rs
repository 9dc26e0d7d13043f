//! Two independent SHA-256 compressions at once.
//!
//! With the SHA extensions a block's 64 rounds are one chain of dependent `sha256rnds2`
//! instructions, each waiting for the one before: the processor idles between them. Two blocks
//! of different messages have no dependency between them, so their rounds interleaved take
//! little longer than one block's alone. An event's leaf-version-2 leaf needs a salt and a
//! commitment per erasable value, all independent of each other's, so they are hashed two by
//! two ([`crate::commit`]).
//!
//! Without the SHA extensions (or on other processors) the two blocks are compressed one after
//! the other by `sha2`, with the same result.

use crate::tree::Hash;

/// SHA-256's initial hash value (FIPS 180-4 §5.3.3).
pub(crate) const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The hash a final state gives.
pub(crate) fn digest(state: [u32; 8]) -> Hash {
    let mut hash = [0u8; 32];
    for (bytes, word) in hash.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    hash
}

/// Pads a message whose last `rest` bytes (fewer than a block) start `tail`, every byte after
/// them zero, for a message of `length` bytes in all (FIPS 180-4 §5.1.1); says how many blocks,
/// one or two, the tail then fills.
pub(crate) fn pad_tail(tail: &mut [u8; 128], rest: usize, length: usize) -> usize {
    tail[rest] = 0x80;
    let blocks = if rest <= 55 { 1 } else { 2 };
    let end = 64 * blocks;
    tail[end - 8..end].copy_from_slice(&(length as u64 * 8).to_be_bytes());
    blocks
}

/// The first (0) or second block of a padded tail.
pub(crate) fn tail_block(tail: &[u8; 128], index: usize) -> &[u8; 64] {
    let (first, second) = tail.split_at(64);
    let block = if index == 0 { first } else { second };
    block.try_into().expect("half of 128 bytes is a block")
}

/// Compresses `a_block` into `a` and `b_block` into `b` (FIPS 180-4 §6.2.2, one block each).
#[inline]
pub(crate) fn compress_pair(
    a: &mut [u32; 8],
    a_block: &[u8; 64],
    b: &mut [u32; 8],
    b_block: &[u8; 64],
) {
    #[cfg(target_arch = "x86_64")]
    if shani::available() {
        // SAFETY: the processor was just found to have the features the function enables.
        unsafe { shani::compress_pair(a, a_block, b, b_block) };
        return;
    }
    compress(a, a_block);
    compress(b, b_block);
}

/// Compresses one block into `state`.
pub(crate) fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    use sha2::digest::generic_array::GenericArray;
    sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
}

#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_loadu_si128, _mm_set_epi64x,
        _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi8,
        _mm_shuffle_epi32, _mm_storeu_si128,
    };

    /// The SHA-256 round constants (FIPS 180-4 §4.2.2), read four at a time.
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// Whether the processor has the SHA extensions and SSE4.1, found once: it is asked for
    /// every pair of blocks.
    pub(super) fn available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("sha")
                && std::arch::is_x86_feature_detected!("sse4.1")
                && std::arch::is_x86_feature_detected!("ssse3")
        })
    }

    /// One SHA-256 state as the SHA instructions hold it: `ABEF` and `CDGH`.
    struct State {
        abef: __m128i,
        cdgh: __m128i,
    }

    impl State {
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        fn load(state: &[u32; 8]) -> Self {
            let [dcba, efgh] = [0, 4].map(|at| {
                let words: &[u32; 4] = state[at..at + 4].try_into().expect("four words");
                // SAFETY: an unaligned load of the sixteen bytes of `words`.
                unsafe { _mm_loadu_si128(words.as_ptr().cast()) }
            });
            let cdab = _mm_shuffle_epi32(dcba, 0xB1);
            let efgh = _mm_shuffle_epi32(efgh, 0x1B);
            State {
                abef: _mm_alignr_epi8(cdab, efgh, 8),
                cdgh: _mm_blend_epi16(efgh, cdab, 0xF0),
            }
        }

        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        fn store(&self, saved: &State, state: &mut [u32; 8]) {
            let abef = _mm_add_epi32(self.abef, saved.abef);
            let cdgh = _mm_add_epi32(self.cdgh, saved.cdgh);
            let feba = _mm_shuffle_epi32(abef, 0x1B);
            let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
            let halves = [
                _mm_blend_epi16(feba, dchg, 0xF0),
                _mm_alignr_epi8(dchg, feba, 8),
            ];
            for (words, half) in state.chunks_exact_mut(4).zip(halves) {
                // SAFETY: an unaligned store into the sixteen bytes of `words`.
                unsafe { _mm_storeu_si128(words.as_mut_ptr().cast(), half) };
            }
        }

        /// Four rounds with the message words `w` (big-endian words already swapped).
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        fn rounds(&mut self, w: __m128i, quad: usize) {
            let k = &K[4 * quad..4 * quad + 4];
            // SAFETY: an unaligned load of four round constants.
            let t = _mm_add_epi32(w, unsafe { _mm_loadu_si128(k.as_ptr().cast()) });
            self.cdgh = _mm_sha256rnds2_epu32(self.cdgh, self.abef, t);
            self.abef = _mm_sha256rnds2_epu32(self.abef, self.cdgh, _mm_shuffle_epi32(t, 0x0E));
        }
    }

    /// The block's sixteen message words, four to a register, in the byte order the rounds take.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn words(block: &[u8; 64]) -> [__m128i; 4] {
        let swap = _mm_set_epi64x(
            0x0C0D_0E0F_0809_0A0Bu64 as i64,
            0x0405_0607_0001_0203u64 as i64,
        );
        let mut words = [swap; 4];
        for (word, bytes) in words.iter_mut().zip(block.chunks_exact(16)) {
            // SAFETY: an unaligned load of the sixteen bytes of `bytes`.
            *word = _mm_shuffle_epi8(unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }, swap);
        }
        words
    }

    /// The next four message words of each block from their last sixteen (FIPS 180-4 §6.2.2
    /// step 1).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(w0: Pair, w1: Pair, w2: Pair, w3: Pair) -> Pair {
        [0, 1].map(|i| {
            _mm_sha256msg2_epu32(
                _mm_add_epi32(
                    _mm_sha256msg1_epu32(w0[i], w1[i]),
                    _mm_alignr_epi8(w3[i], w2[i], 4),
                ),
                w3[i],
            )
        })
    }

    /// Four message words of each of the two blocks.
    type Pair = [__m128i; 2];

    /// [`super::compress_pair`] with the SHA extensions: the two blocks' rounds interleaved.
    /// Written out round group by round group, as `sha2` writes one block's, so that the
    /// message words stay in registers.
    ///
    /// # Safety
    ///
    /// The processor must have the SHA extensions and SSE4.1 ([`available`]).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn compress_pair(
        a: &mut [u32; 8],
        a_block: &[u8; 64],
        b: &mut [u32; 8],
        b_block: &[u8; 64],
    ) {
        let (saved_a, saved_b) = (State::load(a), State::load(b));
        let (mut state_a, mut state_b) = (State::load(a), State::load(b));
        let (wa, wb) = (words(a_block), words(b_block));
        let [mut w0, mut w1, mut w2, mut w3] = [0, 1, 2, 3].map(|i| [wa[i], wb[i]]);
        let mut rounds = |w: Pair, quad: usize| {
            state_a.rounds(w[0], quad);
            state_b.rounds(w[1], quad);
        };
        rounds(w0, 0);
        rounds(w1, 1);
        rounds(w2, 2);
        rounds(w3, 3);
        let mut w4 = schedule(w0, w1, w2, w3);
        rounds(w4, 4);
        w0 = schedule(w1, w2, w3, w4);
        rounds(w0, 5);
        w1 = schedule(w2, w3, w4, w0);
        rounds(w1, 6);
        w2 = schedule(w3, w4, w0, w1);
        rounds(w2, 7);
        w3 = schedule(w4, w0, w1, w2);
        rounds(w3, 8);
        w4 = schedule(w0, w1, w2, w3);
        rounds(w4, 9);
        w0 = schedule(w1, w2, w3, w4);
        rounds(w0, 10);
        w1 = schedule(w2, w3, w4, w0);
        rounds(w1, 11);
        w2 = schedule(w3, w4, w0, w1);
        rounds(w2, 12);
        w3 = schedule(w4, w0, w1, w2);
        rounds(w3, 13);
        w4 = schedule(w0, w1, w2, w3);
        rounds(w4, 14);
        w0 = schedule(w1, w2, w3, w4);
        rounds(w0, 15);
        state_a.store(&saved_a, a);
        state_b.store(&saved_b, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_compresses_as_two_single_compressions() {
        let block = |seed: u8| -> [u8; 64] {
            std::array::from_fn(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
        };
        let mut state = INITIAL;
        for round in 0..50u8 {
            let (a_block, b_block) = (block(round), block(round.wrapping_mul(31) ^ 0x5a));
            let (mut a, mut b) = (state, state.map(|word| word.rotate_left(7)));
            let (mut one_a, mut one_b) = (a, b);
            compress_pair(&mut a, &a_block, &mut b, &b_block);
            compress(&mut one_a, &a_block);
            compress(&mut one_b, &b_block);
            assert_eq!((a, b), (one_a, one_b), "round {round}");
            state = a;
        }
    }
}

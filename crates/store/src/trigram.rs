//! Free text as trigrams, and the blocked Bloom filter over them that both backends keep for
//! each block of an organization's events: a substring search reads a block's events only when
//! its filter may hold every trigram of the text (the embedded log's `log::block`, PostgreSQL's
//! `postgres::text_blocks`). The hashes are fixed, so filters written by one version of
//! Trailmark are read by the next.

/// Calls `each` with the hash of every trigram (three consecutive characters within one line)
/// of `text`, repeats included.
pub(crate) fn for_each_trigram(text: &str, mut each: impl FnMut(u64)) {
    for line in text.split('\n') {
        // A trigram's hash is over its UTF-8 bytes: a slice of the line, hashed in place.
        if line.is_ascii() {
            for trigram in line.as_bytes().windows(3) {
                each(trigram_hash(trigram));
            }
            continue;
        }
        // Where each of the last three characters starts; the line's end closes the last.
        let mut starts = [0usize; 3];
        let ends = line.char_indices().map(|(at, _)| at).chain([line.len()]);
        for (count, at) in ends.enumerate() {
            if count >= 3 {
                each(trigram_hash(&line.as_bytes()[starts[count % 3]..at]));
            }
            starts[count % 3] = at;
        }
    }
}

/// The trigram hashes of `text` ([`for_each_trigram`]), collected.
pub(crate) fn trigrams_of(text: &str) -> Vec<u64> {
    let mut trigrams = Vec::with_capacity(text.len());
    for_each_trigram(text, |key| trigrams.push(key));
    trigrams
}

/// FNV-1a over the trigram's UTF-8 bytes: fixed, so filters written by one run of Trailmark are
/// read by the next.
fn trigram_hash(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A blocked Bloom filter: each key sets [`Bloom::BITS_PER_KEY_PROBES`] bits within one 64-byte
/// block, so a test reads 64 bytes. Layout: block count (u32 LE), then the blocks.
pub(crate) struct Bloom;

impl Bloom {
    pub(crate) const BLOCK_BYTES: usize = 64;
    const BITS_PER_KEY: usize = 10;
    const BITS_PER_KEY_PROBES: u32 = 7;

    /// A filter for `count` keys.
    pub(crate) fn build(count: usize, keys: impl Iterator<Item = u64>) -> Vec<u8> {
        let blocks = (count * Self::BITS_PER_KEY)
            .div_ceil(Self::BLOCK_BYTES * 8)
            .max(1);
        let mut bytes = vec![0u8; 4 + blocks * Self::BLOCK_BYTES];
        bytes[..4].copy_from_slice(&(blocks as u32).to_le_bytes());
        for key in keys {
            let block = Self::block_of(key, blocks as u32) as usize;
            let bits =
                &mut bytes[4 + block * Self::BLOCK_BYTES..4 + (block + 1) * Self::BLOCK_BYTES];
            for bit in Self::bits(key) {
                bits[bit / 8] |= 1 << (bit % 8);
            }
        }
        bytes
    }

    /// The block a key's bits lie in, of `blocks`.
    pub(crate) fn block_of(key: u64, blocks: u32) -> u32 {
        ((key >> 32) % u64::from(blocks.max(1))) as u32
    }

    /// Whether `block` (the 64 bytes [`Bloom::block_of`] names) may hold `key`.
    pub(crate) fn block_may_contain(block: &[u8], key: u64) -> bool {
        Self::bits(key).all(|bit| {
            block
                .get(bit / 8)
                .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
        })
    }

    fn bits(key: u64) -> impl Iterator<Item = usize> {
        let (h1, h2) = (key as u32, ((key as u32).rotate_left(16)) | 1);
        (0..Self::BITS_PER_KEY_PROBES).map(move |i| {
            (h1.wrapping_add(i.wrapping_mul(h2)) % (Self::BLOCK_BYTES as u32 * 8)) as usize
        })
    }
}

/// Whether the filter `bloom` (laid out by [`Bloom::build`]) may hold every key of `keys`;
/// a filter too short for its own block count holds nothing.
pub(crate) fn may_contain_all(bloom: &[u8], keys: &[u64]) -> bool {
    let Some(count) = bloom.get(..4) else {
        return false;
    };
    let blocks = u32::from_le_bytes([count[0], count[1], count[2], count[3]]);
    keys.iter().all(|&key| {
        let at = 4 + Bloom::block_of(key, blocks) as usize * Bloom::BLOCK_BYTES;
        bloom
            .get(at..at + Bloom::BLOCK_BYTES)
            .is_some_and(|block| Bloom::block_may_contain(block, key))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trigram is three characters, whatever their UTF-8 length: its hash is over their bytes.
    #[test]
    fn trigrams_are_of_characters_not_bytes() {
        let text = "aé€😀b\nxy\nabc";
        let mut expected = Vec::new();
        for line in text.split('\n') {
            let chars: Vec<char> = line.chars().collect();
            for window in chars.windows(3) {
                expected.push(trigram_hash(window.iter().collect::<String>().as_bytes()));
            }
        }
        assert_eq!(expected.len(), 4);
        assert_eq!(trigrams_of(text), expected);
    }

    #[test]
    fn a_filter_holds_its_keys_and_rules_out_most_others() {
        let keys: Vec<u64> = (0..5_000u64)
            .map(|n| trigram_hash(&n.to_le_bytes()))
            .collect();
        let bloom = Bloom::build(keys.len(), keys.iter().copied());
        assert!(keys.chunks(7).all(|some| may_contain_all(&bloom, some)));
        let others = (5_000..15_000u64)
            .filter(|n| may_contain_all(&bloom, &[trigram_hash(&n.to_le_bytes())]))
            .count();
        assert!(others < 300, "{others} false positives in 10,000");
        assert!(may_contain_all(&bloom, &[]));
        assert!(!may_contain_all(&bloom[..10], &keys[..1]));
    }
}

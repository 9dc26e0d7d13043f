//! Standard base64 (RFC 4648 §4, padded) of exactly `N` bytes, decoded by table lookup.
//!
//! A verifier decodes every event's `leaf_hash` and seed and the lower hashes of each
//! inclusion proof: a general decoder's bookkeeping (lengths, chunking, padding modes) costs
//! more than the lookups themselves. This accepts exactly what the `base64` crate's standard
//! engine accepts from `decode_slice` when it yields `N` bytes: the canonical text only, with
//! its padding and with the unused bits of its last character zero.

/// Marks a byte that is not in the alphabet.
const INVALID: u8 = 0xff;

/// Each byte's six bits, or [`INVALID`].
const VALUES: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut values = [INVALID; 256];
    let mut at = 0;
    while at < 64 {
        values[alphabet[at] as usize] = at as u8;
        at += 1;
    }
    values
};

/// How many characters the padded base64 of `n` bytes takes.
const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The `N` bytes whose standard base64 is `text`; `None` for any other text.
pub(crate) fn decode<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != encoded_len(N) {
        return None;
    }
    let mut bytes = [0u8; N];
    let groups = N / 3;
    for (chars, out) in text
        .chunks_exact(4)
        .take(groups)
        .zip(bytes.chunks_exact_mut(3))
    {
        let values = [0, 1, 2, 3].map(|i| VALUES[usize::from(chars[i])]);
        // An invalid byte has its top bits set, which no six-bit value has.
        if values.iter().fold(0, |all, value| all | value) & 0xc0 != 0 {
            return None;
        }
        let bits = u32::from(values[0]) << 18
            | u32::from(values[1]) << 12
            | u32::from(values[2]) << 6
            | u32::from(values[3]);
        out.copy_from_slice(&bits.to_be_bytes()[1..]);
    }
    let tail = &text[groups * 4..];
    let value = |at: usize| Some(VALUES[usize::from(tail[at])]).filter(|&v| v != INVALID);
    match N % 3 {
        // One byte left: two characters, the second's low four bits unused, then `==`.
        1 => {
            let (first, second) = (value(0)?, value(1)?);
            if second & 0x0f != 0 || &tail[2..] != b"==" {
                return None;
            }
            bytes[N - 1] = first << 2 | second >> 4;
        }
        // Two bytes left: three characters, the third's low two bits unused, then `=`.
        2 => {
            let (first, second, third) = (value(0)?, value(1)?, value(2)?);
            if third & 0x03 != 0 || tail[3] != b'=' {
                return None;
            }
            bytes[N - 2] = first << 2 | second >> 4;
            bytes[N - 1] = (second & 0x0f) << 4 | third >> 2;
        }
        _ => {}
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// What the `base64` crate decodes `text` to, when that is exactly `N` bytes.
    fn reference<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
        let mut bytes = vec![0u8; N + 3];
        let written = base64::engine::general_purpose::STANDARD
            .decode_slice(text, &mut bytes)
            .ok()?;
        (written == N).then(|| bytes[..N].try_into().expect("N bytes"))
    }

    /// Every text made from an encoding by changing, removing or adding one character (from
    /// characters that matter to base64: padding, the alphabet's ends, the URL-safe ones,
    /// whitespace, non-ASCII) decodes here exactly as it does with the `base64` crate.
    fn agrees_on_every_near_text<const N: usize>() {
        let replacements: &[u8] = b"=A/+-_ \n\xc3\x00aZz09Q";
        for seed in 0..40u8 {
            let bytes: [u8; N] =
                std::array::from_fn(|i| (i as u8).wrapping_mul(seed.wrapping_add(17)) ^ seed);
            let text = base64::engine::general_purpose::STANDARD.encode(bytes);
            assert_eq!(decode::<N>(text.as_bytes()), Some(bytes), "{text}");
            let text = text.into_bytes();
            let mut near: Vec<Vec<u8>> = vec![text[..text.len() - 1].to_vec(), {
                let mut longer = text.clone();
                longer.push(b'=');
                longer
            }];
            for at in 0..text.len() {
                let mut removed = text.clone();
                removed.remove(at);
                near.push(removed);
                for &replacement in replacements {
                    let mut changed = text.clone();
                    changed[at] = replacement;
                    near.push(changed);
                    let mut added = text.clone();
                    added.insert(at, replacement);
                    near.push(added);
                }
            }
            for text in near {
                assert_eq!(
                    decode::<N>(&text),
                    reference::<N>(&text),
                    "{}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    #[test]
    fn hashes_decode_as_the_base64_crate_decodes_them() {
        agrees_on_every_near_text::<32>();
    }

    #[test]
    fn seeds_decode_as_the_base64_crate_decodes_them() {
        agrees_on_every_near_text::<16>();
    }

    #[test]
    fn set_unused_bits_are_rejected_as_the_base64_crate_rejects_them() {
        for last in 0..=255u8 {
            let mut hash = b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_vec();
            hash[42] = last;
            assert_eq!(decode::<32>(&hash), reference::<32>(&hash), "{last}");
            let mut seed = b"AAAAAAAAAAAAAAAAAAAAAA==".to_vec();
            seed[21] = last;
            assert_eq!(decode::<16>(&seed), reference::<16>(&seed), "{last}");
        }
    }
}

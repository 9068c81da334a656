//! SHA-1 (RFC 3174) and HMAC-SHA1 (RFC 2104), for coturn's REST credentials only.
//!
//! The `sha1` crate is in the dependency tree (through `stun`) but is not a dependency of this
//! crate, and this module may not add one; TURN's long-term credential mechanism (RFC 5389
//! section 15.4) and coturn's REST API fix HMAC-SHA1. Short inputs, not a hot path: one
//! whole-message function, checked against the RFCs' test vectors below. Replace it with the
//! `sha1` crate when a manifest change is allowed.

/// SHA-1's block size in bytes (RFC 3174 section 2).
const BLOCK: usize = 64;
/// RFC 2104 section 2: the inner and outer pads.
const IPAD: u8 = 0x36;
const OPAD: u8 = 0x5c;

/// SHA-1 of the concatenation of `parts`.
pub(crate) fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut message: Vec<u8> = parts.concat();
    let bit_len = (message.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % BLOCK != BLOCK - 8 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    let mut state: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    for block in message.chunks_exact(BLOCK) {
        compress(&mut state, block);
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 of `message` under `key`.
pub(crate) fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        let digest = sha1(&[key]);
        for (b, k) in block_key.iter_mut().zip(digest) {
            *b = k;
        }
    } else {
        for (b, k) in block_key.iter_mut().zip(key) {
            *b = *k;
        }
    }
    let inner_key: Vec<u8> = block_key.iter().map(|b| b ^ IPAD).collect();
    let outer_key: Vec<u8> = block_key.iter().map(|b| b ^ OPAD).collect();
    let inner = sha1(&[&inner_key, message]);
    sha1(&[&outer_key, &inner])
}

fn compress(state: &mut [u32; 5], block: &[u8]) {
    // The message schedule as a sliding window: w[0] is W(t), w[15] is W(t + 15).
    let mut w = [0u32; 16];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = <[u8; 4]>::try_from(bytes).map(u32::from_be_bytes).unwrap_or(0);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *state;
    for t in 0..80 {
        let (f, k) = match t {
            0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
            20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
            _ => (b ^ c ^ d, 0xCA62_C1D6),
        };
        let temp = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(w[0]);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = temp;
        let next = (w[13] ^ w[8] ^ w[2] ^ w[0]).rotate_left(1);
        w.rotate_left(1);
        w[15] = next;
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_matches_rfc_3174_vectors() {
        assert_eq!(hex(&sha1(&[b"abc"])), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            hex(&sha1(&[
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            ])),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(hex(&sha1(&[b""])), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            hex(&sha1(&[&million_a])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn parts_hash_as_their_concatenation() {
        assert_eq!(sha1(&[b"ab", b"", b"c"]), sha1(&[b"abc"]));
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202_vectors() {
        assert_eq!(
            hex(&hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex(&hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }
}

//! QUIC variable-length integers (RFC 9000 §16): 1, 2, 4 or 8 bytes, values below 2^62.

/// The largest value a varint can hold.
pub const MAX: u64 = (1 << 62) - 1;

/// How many bytes `v` takes on the wire.
pub fn encoded_len(v: u64) -> usize {
    match v {
        0..=63 => 1,
        64..=16_383 => 2,
        16_384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// Appends `v` (must be ≤ [`MAX`]) in its shortest encoding.
pub fn encode(v: u64, out: &mut Vec<u8>) {
    debug_assert!(v <= MAX);
    match encoded_len(v) {
        1 => out.push(v as u8),
        2 => out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes()),
        4 => out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

/// Reads one varint from the front of `buf`: `Some((value, bytes used))`, or `None` when `buf`
/// holds only part of it.
pub fn decode(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let mut v = u64::from(first & 0x3f);
    for b in &buf[1..len] {
        v = (v << 8) | u64::from(*b);
    }
    Some((v, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9000_examples() {
        // RFC 9000 Appendix A.1 sample encodings.
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, value) in cases {
            assert_eq!(decode(bytes), Some((value, bytes.len())));
            let mut out = Vec::new();
            encode(value, &mut out);
            assert_eq!(out, bytes);
        }
        // Non-minimal encodings decode too.
        assert_eq!(decode(&[0x40, 0x25]), Some((37, 2)));
    }

    #[test]
    fn peer_setting_ids() {
        // 0xc671706a as Chromium-d07 and wtq send it (8 bytes), 0x2c7cf000 as pywt021 does.
        assert_eq!(
            decode(&[0xc0, 0, 0, 0, 0xc6, 0x71, 0x70, 0x6a]),
            Some((0xc671706a, 8))
        );
        assert_eq!(decode(&[0xac, 0x7c, 0xf0, 0x00]), Some((0x2c7cf000, 4)));
        let mut out = Vec::new();
        encode(0x2b603742, &mut out);
        assert_eq!(out, [0xab, 0x60, 0x37, 0x42]);
    }

    #[test]
    fn truncated_and_boundaries() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0x40]), None);
        assert_eq!(decode(&[0xc0, 0, 0]), None);
        for v in [0, 63, 64, 16_383, 16_384, 1_073_741_823, 1_073_741_824, MAX] {
            let mut out = Vec::new();
            encode(v, &mut out);
            assert_eq!(out.len(), encoded_len(v));
            assert_eq!(decode(&out), Some((v, out.len())));
        }
    }
}

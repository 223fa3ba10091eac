//! The HPACK/QPACK Huffman code (RFC 7541 §5.2 and Appendix B), used for string literals in QPACK
//! field sections (RFC 9204 §4.1.2).
//!
//! Decoding walks a 4-bit-at-a-time state table built once from the code table: every state is an
//! internal node of the code tree, and since the shortest code is 5 bits a nibble completes at most
//! one symbol.

use once_cell::sync::Lazy;
use std::fmt;

/// A Huffman-coded string was malformed (EOS symbol inside it, or invalid padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuffmanError(pub &'static str);

impl fmt::Display for HuffmanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Huffman string: {}", self.0)
    }
}

impl std::error::Error for HuffmanError {}

/// `(code, bit length)` for symbols 0..=255 and EOS (256), RFC 7541 Appendix B.
#[rustfmt::skip]
const CODES: [(u32, u8); 257] = [
    // 0..=31: control characters
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28),
    (0xfffffe4, 28), (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28),
    (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28),
    (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28),
    (0xffffff8, 28), (0xffffff9, 28), (0xffffffa, 28), (0xffffffb, 28),
    // 32 ' ' ..= 47 '/'
    (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11),
    (0x3fa, 10), (0x3fb, 10), (0xf9, 8), (0x7fb, 11),
    (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    // 48 '0' ..= 63 '?'
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6),
    (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6),
    (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10),
    // 64 '@' ..= 79 'O'
    (0x1ffa, 13), (0x21, 6), (0x5d, 7), (0x5e, 7),
    (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7),
    (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7),
    // 80 'P' ..= 95 '_'
    (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7),
    (0xfc, 8), (0x73, 7), (0xfd, 8), (0x1ffb, 13),
    (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    // 96 '`' ..= 111 'o'
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5),
    (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6),
    (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5),
    // 112 'p' ..= 127 DEL
    (0x2b, 6), (0x76, 7), (0x2c, 6), (0x8, 5),
    (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15),
    (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28),
    // 128..=143
    (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23),
    (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23),
    (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    // 144..=159
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23),
    (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23),
    (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24),
    // 160..=175
    (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22),
    (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24),
    (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23),
    // 176..=191
    (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23),
    (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22),
    (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    // 192..=207
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19),
    (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25),
    (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25),
    // 208..=223
    (0x7fff2, 19), (0x1fffe3, 21), (0x3ffffe6, 26), (0x7ffffe0, 27),
    (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26),
    (0xffffffd, 28), (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27),
    // 224..=239
    (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23),
    (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25), (0x1ffffef, 25),
    (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    // 240..=255
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26),
    (0x7ffffe7, 27), (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27),
    (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26),
    // 256: EOS
    (0x3fffffff, 30),
];

const EOS: u16 = 256;

/// Number of bytes `encode(input)` produces.
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: usize = input.iter().map(|&b| CODES[b as usize].1 as usize).sum();
    bits.div_ceil(8)
}

/// Huffman-encodes `input`, padding the last byte with the most significant bits of EOS (all ones).
pub fn encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(input));
    let mut acc: u64 = 0; // pending bits, right-aligned
    let mut nbits: u32 = 0;
    for &b in input {
        let (code, len) = CODES[b as usize];
        acc = (acc << len) | code as u64;
        nbits += len as u32;
        while nbits >= 8 {
            nbits -= 8;
            out.push((acc >> nbits) as u8);
        }
        acc &= (1u64 << nbits) - 1;
    }
    if nbits > 0 {
        let pad = 8 - nbits;
        out.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
    }
    out
}

/// One transition of the nibble decoder.
#[derive(Clone, Copy, Default)]
struct Step {
    /// State (internal tree node) after consuming the nibble.
    next: u8,
    /// Symbol completed within the nibble, if `emit`.
    sym: u8,
    emit: bool,
    /// The nibble ran into EOS.
    fail: bool,
}

struct Decoder {
    /// `steps[state][nibble]`.
    steps: Vec<[Step; 16]>,
    /// `accept[state]`: ending the string in this state is valid padding (a prefix of EOS, i.e. all
    /// ones, of at most 7 bits; the root means no padding).
    accept: Vec<bool>,
}

/// A tree node child: an internal node index or a leaf symbol.
#[derive(Clone, Copy)]
enum Child {
    None,
    Node(usize),
    Leaf(u16),
}

static DECODER: Lazy<Decoder> = Lazy::new(build_decoder);

fn build_decoder() -> Decoder {
    // Internal nodes of the code tree; node 0 is the root. A complete code over 257 symbols has
    // exactly 256 internal nodes, so a node index fits in a u8.
    let mut tree: Vec<[Child; 2]> = vec![[Child::None, Child::None]];
    // (depth, path is all ones) for each internal node.
    let mut info: Vec<(u8, bool)> = vec![(0, true)];
    for (sym, &(code, len)) in CODES.iter().enumerate() {
        let mut node = 0usize;
        for i in (0..len).rev() {
            let bit = ((code >> i) & 1) as usize;
            if i == 0 {
                assert!(
                    matches!(tree[node][bit], Child::None),
                    "Huffman table not prefix-free"
                );
                tree[node][bit] = Child::Leaf(sym as u16);
            } else {
                node = match tree[node][bit] {
                    Child::Node(n) => n,
                    Child::None => {
                        let n = tree.len();
                        tree.push([Child::None, Child::None]);
                        let (d, ones) = info[node];
                        info.push((d + 1, ones && bit == 1));
                        tree[node][bit] = Child::Node(n);
                        n
                    }
                    Child::Leaf(_) => panic!("Huffman table not prefix-free"),
                };
            }
        }
    }
    assert_eq!(tree.len(), 256, "Huffman table incomplete");

    let mut steps = vec![[Step::default(); 16]; tree.len()];
    for (state, row) in steps.iter_mut().enumerate() {
        for (nibble, step) in row.iter_mut().enumerate() {
            let mut node = state;
            for i in (0..4).rev() {
                let bit = (nibble >> i) & 1;
                match tree[node][bit] {
                    Child::Node(n) => node = n,
                    Child::Leaf(EOS) => {
                        step.fail = true;
                        break;
                    }
                    Child::Leaf(s) => {
                        step.emit = true;
                        step.sym = s as u8;
                        node = 0;
                    }
                    Child::None => unreachable!("complete code has no empty children"),
                }
            }
            step.next = node as u8;
        }
    }
    let accept = info
        .iter()
        .map(|&(depth, ones)| ones && depth <= 7)
        .collect();
    Decoder { steps, accept }
}

/// Decodes a Huffman-coded string. Rejects the EOS symbol inside the string, padding longer than
/// 7 bits and padding that is not a prefix of EOS (all ones), as RFC 7541 §5.2 requires.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
    let dec = &*DECODER;
    let mut out = Vec::with_capacity(input.len() + input.len() / 2);
    let mut state = 0usize;
    for &byte in input {
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = dec.steps[state][nibble as usize];
            if step.fail {
                return Err(HuffmanError("EOS symbol inside the string"));
            }
            if step.emit {
                out.push(step.sym);
            }
            state = step.next as usize;
        }
    }
    if !dec.accept[state] {
        return Err(HuffmanError("padding longer than 7 bits or not all ones"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The table is the canonical Huffman code RFC 7541 describes: sorted by (length, symbol), each
    /// code is the previous one plus one, shifted left by the length difference; the first is all
    /// zeros and EOS (the last) is 30 ones. This catches any mistyped entry.
    #[test]
    fn table_is_canonical_and_complete() {
        let mut order: Vec<usize> = (0..257).collect();
        order.sort_by_key(|&s| (CODES[s].1, s));
        assert_eq!(CODES[order[0]].0, 0);
        for w in order.windows(2) {
            let (c0, l0) = CODES[w[0]];
            let (c1, l1) = CODES[w[1]];
            assert_eq!(c1, (c0 + 1) << (l1 - l0), "symbol {} after {}", w[1], w[0]);
        }
        assert_eq!(*order.last().unwrap(), 256);
        // Kraft sum is exactly 1.
        let kraft: u128 = CODES.iter().map(|&(_, l)| 1u128 << (30 - l)).sum();
        assert_eq!(kraft, 1u128 << 30);
        for &(c, l) in CODES.iter() {
            assert!((5..=30).contains(&l) && (c as u64) < (1u64 << l));
        }
    }

    #[test]
    fn rfc7541_appendix_c_examples() {
        let cases: &[(&str, &str)] = &[
            ("www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"),
            ("no-cache", "a8eb10649cbf"),
            ("custom-key", "25a849e95ba97d7f"),
            ("custom-value", "25a849e95bb8e8b4bf"),
            // C.6 response examples
            ("302", "6402"),
            ("private", "aec3771a4b"),
            ("Mon, 21 Oct 2013 20:13:21 GMT", "d07abe941054d444a8200595040b8166e082a62d1bff"),
            ("https://www.example.com", "9d29ad171863c78f0b97c8e9ae82ae43d3"),
            ("307", "640eff"),
            ("gzip", "9bd9ab"),
            (
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
                "94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
            ),
        ];
        for &(text, h) in cases {
            let bytes = hex(h);
            assert_eq!(encode(text.as_bytes()), bytes, "encode {text:?}");
            assert_eq!(encoded_len(text.as_bytes()), bytes.len(), "len {text:?}");
            assert_eq!(decode(&bytes).unwrap(), text.as_bytes(), "decode {text:?}");
        }
    }

    #[test]
    fn empty_string() {
        assert_eq!(encode(b""), Vec::<u8>::new());
        assert_eq!(encoded_len(b""), 0);
        assert_eq!(decode(b"").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn round_trip_all_bytes() {
        let all: Vec<u8> = (0..=255u8).collect();
        let enc = encode(&all);
        assert_eq!(enc.len(), encoded_len(&all));
        assert_eq!(decode(&enc).unwrap(), all);
        for b in 0..=255u8 {
            for n in 1..=9 {
                let s = vec![b; n];
                assert_eq!(decode(&encode(&s)).unwrap(), s, "byte {b} x{n}");
            }
            let s = [b'a', b, b'z', b];
            assert_eq!(decode(&encode(&s)).unwrap(), s);
        }
    }

    #[test]
    fn round_trip_pseudo_random() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let s: Vec<u8> = (0..len)
                .map(|i| (x.rotate_left(i as u32 * 7) >> 3) as u8)
                .collect();
            let enc = encode(&s);
            assert_eq!(enc.len(), encoded_len(&s));
            assert_eq!(decode(&enc).unwrap(), s);
        }
    }

    #[test]
    fn rejects_bad_padding() {
        // "a" is 00011 (5 bits); padding 000 instead of 111.
        assert_eq!(
            decode(&[0b0001_1000]),
            Err(HuffmanError("padding longer than 7 bits or not all ones"))
        );
        // Valid "a": 00011111.
        assert_eq!(decode(&[0b0001_1111]).unwrap(), b"a");
        // Mixed padding 101.
        assert!(decode(&[0b0001_1101]).is_err());
        // A whole byte of padding (8 ones) after a complete string.
        assert!(decode(&[0b0001_1111, 0xff]).is_err());
        assert!(decode(&[0xff]).is_err());
        // "www.example.com" followed by an extra all-ones byte: 8+ bits of padding.
        let mut s = hex("f1e3c2e5f23a6ba0ab90f4ff");
        s.push(0xff);
        assert!(decode(&s).is_err());
        // Single zero byte: "0" (00000) then padding 000.
        assert!(decode(&[0x00]).is_err());
        // "00" is 10 bits: 00000 00000 + 111111 padding would be 6 bits -> valid; with 0 padding bad.
        assert_eq!(decode(&[0x00, 0x3f]).unwrap(), b"00");
        assert!(decode(&[0x00, 0x3e]).is_err());
    }

    #[test]
    fn rejects_eos() {
        // EOS is 30 ones; 4 bytes of ones contain it.
        assert_eq!(
            decode(&[0xff; 4]),
            Err(HuffmanError("EOS symbol inside the string"))
        );
        // EOS after "a": 00011 + 30 ones + 5 bits of ones padding = 40 bits.
        assert!(decode(&[0x1f, 0xff, 0xff, 0xff, 0xff]).is_err());
        // Encoded EOS in the middle of a string, then a valid symbol.
        let mut bits: Vec<u8> = Vec::new();
        let mut acc: u64 = (0x3 << 30) | 0x3fffffff; // "a" then EOS, 35 bits
        acc = (acc << 5) | 0x3; // then "a", 40 bits
        for i in (0..5).rev() {
            bits.push((acc >> (i * 8)) as u8);
        }
        assert!(decode(&bits).is_err());
    }

    #[test]
    fn error_display() {
        assert!(HuffmanError("x").to_string().contains('x'));
    }
}

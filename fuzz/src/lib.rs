//! The fuzz target bodies: each feeds arbitrary bytes to one of wtd's public wire parsers and
//! checks it never panics and keeps its invariants. Shared by the cargo-fuzz targets
//! (`fuzz_targets/*.rs`) and by the stable smoke test `tests/fuzz_smoke.rs`, which includes this
//! file with `#[path]` — so this file must only depend on `wtd` and `std`.

use wtd::h3::capsule::{Capsule, ConnectStreamParser};
use wtd::h3::errors::{
    H3_EXCESSIVE_LOAD, H3_FRAME_UNEXPECTED, H3_MESSAGE_ERROR, QPACK_DECOMPRESSION_FAILED,
    QPACK_ENCODER_STREAM_ERROR,
};
use wtd::h3::huffman;
use wtd::h3::qpack::{decode_field_section, encode_field_section, EncoderStreamReader};
use wtd::h3::settings::Settings;

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target, by name (the smoke test iterates over it).
pub const TARGETS: [(&str, Target); 5] = [
    ("qpack_decode", qpack_decode),
    ("settings_decode", settings_decode),
    ("capsule_stream", capsule_stream),
    ("huffman_decode", huffman_decode),
    ("encoder_stream", encoder_stream),
];

/// `decode_field_section`: never panics; a failure is QPACK_DECOMPRESSION_FAILED; what decodes
/// re-encodes (static/literal only) and decodes to the same fields.
pub fn qpack_decode(data: &[u8]) {
    match decode_field_section(data) {
        Ok(fields) => {
            let refs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let again = decode_field_section(&encode_field_section(&refs))
                .expect("wtd's own encoding decodes");
            assert_eq!(again, fields, "QPACK round trip");
        }
        Err(e) => assert_eq!(e.h3_code(), QPACK_DECOMPRESSION_FAILED, "{e}"),
    }
}

/// `Settings::decode_payload`: never panics; failures are H3_SETTINGS_ERROR; what decodes
/// re-encodes to a payload that decodes to the same settings.
pub fn settings_decode(data: &[u8]) {
    match Settings::decode_payload(data) {
        Ok(s) => {
            let again = Settings::decode_payload(&s.encode_payload()).expect("re-decode");
            assert_eq!(again, s, "SETTINGS round trip");
            // Every query is total.
            let _ = (s.supports_datagrams(), s.is_set(0x2b60_3742), s.get(0x1));
        }
        Err(e) => assert_eq!(e.code, wtd::h3::errors::H3_SETTINGS_ERROR, "{e}"),
    }
}

/// A tiny xorshift64 (the split pattern must come from the input, for reproducibility).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Feeds `data` to a fresh parser in chunks of `size()` bytes, then checks its end state
/// (`finish`, as at FIN): `Ok((capsules, finish error code))`, or the first feed error's code.
#[allow(clippy::type_complexity)]
fn feed_split(
    data: &[u8],
    mut size: impl FnMut() -> usize,
) -> Result<(Vec<Capsule>, Option<u64>), u64> {
    let mut p = ConnectStreamParser::new();
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = size().clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        out.extend(p.feed(chunk).map_err(|e| e.code)?);
    }
    assert_eq!(p.finish().is_ok(), p.pending() == 0);
    Ok((out, p.finish().err().map(|e| e.code)))
}

/// `ConnectStreamParser::feed`: byte 0 seeds the split pattern for the rest. Never panics; errors
/// carry one of the codes the parser documents; fed whole, byte by byte or in random splits, the
/// same input gives the same capsules in the same order and the same end state (or fails in every
/// case).
pub fn capsule_stream(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let whole = feed_split(data, || usize::MAX);
    let bytewise = feed_split(data, || 1);
    let mut rng = XorShift(u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let random = feed_split(data, || (rng.next() % 17) as usize);
    for r in [&whole, &bytewise, &random] {
        if let Err(code) = r {
            assert!(
                [H3_FRAME_UNEXPECTED, H3_EXCESSIVE_LOAD, H3_MESSAGE_ERROR].contains(code),
                "unexpected code 0x{code:x}"
            );
        }
        if let Ok((caps, _)) = r {
            for c in caps {
                if let Capsule::Close { reason, .. } = c {
                    assert!(reason.len() <= 3 * 1024, "reason of {} bytes", reason.len());
                }
            }
        }
    }
    match (&whole, &bytewise, &random) {
        (Ok(a), Ok(b), Ok(c)) => assert!(a == b && b == c, "split changed the capsules"),
        (Err(_), Err(_), Err(_)) => {}
        _ => panic!("split changed the outcome: {whole:?} / {bytewise:?} / {random:?}"),
    }
}

/// `huffman::decode`: never panics; what decodes re-encodes and decodes back; and the input
/// itself, encoded, decodes back to the input.
pub fn huffman_decode(data: &[u8]) {
    if let Ok(plain) = huffman::decode(data) {
        assert_eq!(huffman::decode(&huffman::encode(&plain)).unwrap(), plain);
    }
    let enc = huffman::encode(data);
    assert_eq!(enc.len(), huffman::encoded_len(data));
    assert_eq!(huffman::decode(&enc).expect("own encoding decodes"), data);
}

/// `EncoderStreamReader::feed`: byte 0 seeds the split pattern. The stream is valid exactly when
/// every byte is Set Dynamic Table Capacity 0 (`0x20`); errors are QPACK_ENCODER_STREAM_ERROR and
/// stick.
pub fn encoder_stream(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let valid = data.iter().all(|&b| b == 0x20);
    let mut rng = XorShift(u64::from(seed) + 1);
    let mut r = EncoderStreamReader::new();
    let mut rest = data;
    let mut failed = false;
    while !rest.is_empty() {
        let n = ((rng.next() % 9) as usize).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        match r.feed(chunk) {
            Ok(()) => assert!(!failed, "error did not stick"),
            Err(e) => {
                assert_eq!(e.h3_code(), QPACK_ENCODER_STREAM_ERROR);
                failed = true;
            }
        }
    }
    assert_eq!(!failed, valid, "{data:02x?}");
    if failed {
        assert!(r.feed(&[0x20]).is_err(), "error did not stick");
    }
}

/// Seed inputs per target: real peers' bytes from WIRE-FACTS plus edge cases. (Byte 0 of the
/// capsule_stream and encoder_stream inputs is the split seed.)
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let h = |s: &str| -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let with_seed = |v: Vec<u8>| {
        let mut out = vec![7u8];
        out.extend(v);
        out
    };
    match target {
        "qpack_decode" => {
            let mut v = vec![
                h("0000d9"),
                h("0000d92f0d4148b782c69b07522b3d895a74a6b65692c1ca9f8592c1ca900b"),
                h("0000d9271573656377656274"),
                h("00005f09821001"),
                h("0600d7cf8483828180"),
                h("0000ff"),
            ];
            v.push(encode_field_section(&[
                (":method", "CONNECT"),
                (":protocol", "webtransport"),
                (":scheme", "https"),
                (":path", "/echo"),
                (":authority", "localhost"),
                ("origin", "http://localhost:8000"),
                ("sec-webtransport-http3-draft02", "1"),
            ]));
            v
        }
        "settings_decode" => vec![
            h("01800100000680004000074064330180ffd27701ab60374201c0000000c671706a10"),
            h("010006800100000700080133016b61804000006b640a6b650aac7cf00001"),
            h("0801330107100150006b61006b65006b640094e9cd2901"),
            h("c0000000c671706a01ab60374301330108010680004000ab6037420180ffd27701"),
            h("0150000710080121013301ab60374201ac7cf00001c0000000c671706a106b61810000006b6440646b654064"),
            Settings::wtd_local().encode_payload(),
            h("3301 3301"),
        ],
        "capsule_stream" => vec![
            with_seed(h("000a684307 0000002a 627965")),
            with_seed(h("684307 0000002a 627965")),
            with_seed(h("2101ff 0003684307 0007 0000002a627965")),
            with_seed(h("008000 78ae00")),
            with_seed(h("0101d9")),
            with_seed(h("0080100000")),
        ],
        "huffman_decode" => vec![
            h("f1e3c2e5f23a6ba0ab90f4ff"),
            h("a8eb10649cbf"),
            h("1001"),
            h("4148b782c69b07522b3d895a74a6b65692c1ca9f"),
            h("ffffffff"),
            vec![],
        ],
        "encoder_stream" => vec![
            with_seed(h("20")),
            with_seed(h("202020")),
            with_seed(h("3fe11f")),
            with_seed(h("c00161")),
            with_seed(h("4161 0162")),
            with_seed(h("00")),
        ],
        _ => Vec::new(),
    }
}

//! HTTP/3 SETTINGS (RFC 9114 §7.2.4) and the WebTransport settings of every draft wtd speaks.

use std::collections::HashSet;

use super::errors::{H3Error, H3_EXCESSIVE_LOAD, H3_SETTINGS_ERROR};
use super::varint;

/// QPACK_MAX_TABLE_CAPACITY; wtd sends 0 so peers never use the dynamic table.
pub const QPACK_MAX_TABLE_CAPACITY: u64 = 0x1;
/// SETTINGS_MAX_FIELD_SECTION_SIZE.
pub const MAX_FIELD_SECTION_SIZE: u64 = 0x6;
/// QPACK_BLOCKED_STREAMS.
pub const QPACK_BLOCKED_STREAMS: u64 = 0x7;
/// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 9220).
pub const ENABLE_CONNECT_PROTOCOL: u64 = 0x8;
/// SETTINGS_H3_DATAGRAM (RFC 9297).
pub const H3_DATAGRAM: u64 = 0x33;
/// The pre-RFC H3_DATAGRAM id (draft-04) that Chromium and wtq still send and accept.
pub const H3_DATAGRAM_DRAFT04: u64 = 0xff_d277;
/// SETTINGS_ENABLE_WEBTRANSPORT (draft-02; Chromium's default).
pub const ENABLE_WEBTRANSPORT: u64 = 0x2b60_3742;
/// SETTINGS_WEBTRANSPORT_MAX_SESSIONS (draft-07).
pub const WEBTRANSPORT_MAX_SESSIONS_D07: u64 = 0xc671_706a;
/// SETTINGS_WT_MAX_SESSIONS (draft-13, pywebtransport 0.6–0.8).
pub const WT_MAX_SESSIONS_D13: u64 = 0x14e9_cd29;
/// SETTINGS_WT_ENABLED (draft-15, pywebtransport ≥ 0.15).
pub const WT_ENABLED: u64 = 0x2c7c_f000;
/// SETTINGS_WT_INITIAL_MAX_DATA (draft-13+).
pub const WT_INITIAL_MAX_DATA: u64 = 0x2b61;
/// SETTINGS_WT_INITIAL_MAX_STREAMS_UNI (draft-13+).
pub const WT_INITIAL_MAX_STREAMS_UNI: u64 = 0x2b64;
/// SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI (draft-13+).
pub const WT_INITIAL_MAX_STREAMS_BIDI: u64 = 0x2b65;

/// How many WebTransport sessions per connection wtd advertises (draft-07 and draft-13 settings).
pub const MAX_SESSIONS_ADVERTISED: u64 = 16;

/// Most id/value pairs wtd accepts in one SETTINGS frame (real peers send 5 to 12, GREASE
/// included); more is H3_EXCESSIVE_LOAD.
pub const MAX_SETTINGS_PAIRS: usize = 64;

/// A decoded SETTINGS frame: id/value pairs in the order received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pairs: Vec<(u64, u64)>,
}

impl Settings {
    /// Builds settings from pairs (no validation; for local settings and tests).
    pub fn from_pairs(pairs: &[(u64, u64)]) -> Self {
        Settings {
            pairs: pairs.to_vec(),
        }
    }

    /// What wtd sends, as client and as server: the union every peer accepts
    /// (WIRE-FACTS §4.1/§4.3), with a zero QPACK dynamic table.
    pub fn wtd_local() -> Self {
        Self::from_pairs(&[
            (QPACK_MAX_TABLE_CAPACITY, 0),
            // Enforced on every header block wtd receives (16 KiB: what Chromium and wtq send).
            (
                MAX_FIELD_SECTION_SIZE,
                super::qpack::MAX_FIELD_SECTION_SIZE as u64,
            ),
            (QPACK_BLOCKED_STREAMS, 0),
            (ENABLE_CONNECT_PROTOCOL, 1),
            (H3_DATAGRAM, 1),
            (H3_DATAGRAM_DRAFT04, 1),
            (ENABLE_WEBTRANSPORT, 1),
            (WEBTRANSPORT_MAX_SESSIONS_D07, MAX_SESSIONS_ADVERTISED),
            (WT_MAX_SESSIONS_D13, MAX_SESSIONS_ADVERTISED),
            (WT_ENABLED, 1),
            // pywebtransport 0.21 refuses a second session on a connection whose peer announced
            // no WT_INITIAL_MAX_DATA ("wt_session validate exceeded"); found by the interop suite.
            (WT_INITIAL_MAX_DATA, 16_777_216),
        ])
    }

    /// The value of `id`, if present.
    pub fn get(&self, id: u64) -> Option<u64> {
        self.pairs.iter().find(|(k, _)| *k == id).map(|(_, v)| *v)
    }

    /// True when `id` is present with a non-zero value.
    pub fn is_set(&self, id: u64) -> bool {
        self.get(id).is_some_and(|v| v > 0)
    }

    /// True when the peer announced HTTP datagram support (RFC id or the draft-04 id).
    pub fn supports_datagrams(&self) -> bool {
        self.get(H3_DATAGRAM) == Some(1) || self.get(H3_DATAGRAM_DRAFT04) == Some(1)
    }

    /// The id/value pairs in order.
    pub fn pairs(&self) -> &[(u64, u64)] {
        &self.pairs
    }

    /// The SETTINGS frame payload.
    pub fn encode_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.pairs {
            varint::encode(*k, &mut out);
            varint::encode(*v, &mut out);
        }
        out
    }

    /// Decodes a SETTINGS payload. Unknown and GREASE ids are kept but never acted on; a
    /// duplicate id, an HTTP/2-only id, a truncated pair or a boolean setting with a value other
    /// than 0/1 is H3_SETTINGS_ERROR; more than [`MAX_SETTINGS_PAIRS`] pairs is
    /// H3_EXCESSIVE_LOAD. Linear in the payload size.
    pub fn decode_payload(mut buf: &[u8]) -> Result<Self, H3Error> {
        let mut pairs: Vec<(u64, u64)> = Vec::new();
        let mut ids = HashSet::new();
        while !buf.is_empty() {
            if pairs.len() >= MAX_SETTINGS_PAIRS {
                return Err(H3Error::new(
                    H3_EXCESSIVE_LOAD,
                    format!("more than {MAX_SETTINGS_PAIRS} settings"),
                ));
            }
            let (id, a) = varint::decode(buf).ok_or_else(truncated)?;
            let (value, b) = varint::decode(&buf[a..]).ok_or_else(truncated)?;
            buf = &buf[a + b..];
            if matches!(id, 0x0 | 0x2 | 0x3 | 0x4 | 0x5) {
                return Err(H3Error::new(
                    H3_SETTINGS_ERROR,
                    format!("HTTP/2 setting 0x{id:x}"),
                ));
            }
            if !ids.insert(id) {
                return Err(H3Error::new(
                    H3_SETTINGS_ERROR,
                    format!("duplicate setting 0x{id:x}"),
                ));
            }
            let boolean = matches!(
                id,
                ENABLE_CONNECT_PROTOCOL | H3_DATAGRAM | H3_DATAGRAM_DRAFT04 | WT_ENABLED
            );
            if boolean && value > 1 {
                return Err(H3Error::new(
                    H3_SETTINGS_ERROR,
                    format!("setting 0x{id:x} must be 0 or 1, got {value}"),
                ));
            }
            pairs.push((id, value));
        }
        Ok(Settings { pairs })
    }
}

fn truncated() -> H3Error {
    H3Error::new(H3_SETTINGS_ERROR, "truncated SETTINGS frame")
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

    #[test]
    fn chromium_default_with_grease() {
        // WIRE-FACTS §1.1 plus a GREASE pair 0x569cc8f05 = 2328412238 (8-byte id, 4-byte value).
        let mut raw = hex("01 80010000 06 80004000 07 4064 33 01 80ffd277 01 ab603742 01");
        varint::encode(0x5_69cc_8f05, &mut raw);
        varint::encode(2_328_412_238, &mut raw);
        let s = Settings::decode_payload(&raw).unwrap();
        assert_eq!(s.get(QPACK_MAX_TABLE_CAPACITY), Some(65536));
        assert_eq!(s.get(QPACK_BLOCKED_STREAMS), Some(100));
        assert!(s.supports_datagrams());
        assert!(s.is_set(ENABLE_WEBTRANSPORT));
        assert!(!s.is_set(ENABLE_CONNECT_PROTOCOL));
        assert_eq!(s.get(0x5_69cc_8f05), Some(2_328_412_238));
    }

    #[test]
    fn every_peer_from_wire_facts() {
        let cases = [
            // Chromium -d07
            ("01800100000680004000074064330180ffd27701ab60374201c0000000c671706a10", WEBTRANSPORT_MAX_SESSIONS_D07, 16),
            // pywt021 (client and server)
            ("010006800100000700080133016b61804000006b640a6b650aac7cf00001", WT_ENABLED, 1),
            // pywt061 client
            ("0801330107100150006b61006b65006b640094e9cd2901", WT_MAX_SESSIONS_D13, 1),
            // pywt061 server
            ("0801330107100150006b61006b65006b640094e9cd296710", WT_MAX_SESSIONS_D13, 10000),
            // wtq client (with the older 0x2b603743)
            ("c0000000c671706a01ab60374301330108010680004000ab6037420180ffd27701", ENABLE_WEBTRANSPORT, 1),
            // wtr client
            ("01003301c0000000c671706a010801ab603742010700", WEBTRANSPORT_MAX_SESSIONS_D07, 1),
            // aioquic server (0x21 is its reserved dummy setting)
            ("0150000710080121013301ab60374201", ENABLE_WEBTRANSPORT, 1),
            // aioquic --advertise-draft15
            ("0150000710080121013301ab60374201ac7cf00001c0000000c671706a106b61810000006b6440646b654064", WT_ENABLED, 1),
        ];
        for (raw, id, value) in cases {
            let s = Settings::decode_payload(&hex(raw)).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(s.get(id), Some(value), "{raw}");
            assert!(s.supports_datagrams(), "{raw}");
        }
    }

    #[test]
    fn local_round_trip_and_errors() {
        let local = Settings::wtd_local();
        assert_eq!(
            Settings::decode_payload(&local.encode_payload()).unwrap(),
            local
        );
        assert_eq!(local.get(QPACK_MAX_TABLE_CAPACITY), Some(0));
        assert_eq!(local.get(MAX_FIELD_SECTION_SIZE), Some(16384));
        // Needed for several pywebtransport 0.21 sessions on one connection.
        assert!(local.is_set(WT_INITIAL_MAX_DATA));
        let dup = hex("3301 3301");
        assert_eq!(
            Settings::decode_payload(&dup).unwrap_err().code,
            H3_SETTINGS_ERROR
        );
        assert_eq!(
            Settings::decode_payload(&hex("0201")).unwrap_err().code,
            H3_SETTINGS_ERROR
        );
        assert_eq!(
            Settings::decode_payload(&hex("3302")).unwrap_err().code,
            H3_SETTINGS_ERROR
        );
        assert_eq!(
            Settings::decode_payload(&hex("33")).unwrap_err().code,
            H3_SETTINGS_ERROR
        );
        assert_eq!(
            Settings::decode_payload(&hex("80ffd2")).unwrap_err().code,
            H3_SETTINGS_ERROR
        );
        assert_eq!(Settings::decode_payload(&[]).unwrap(), Settings::default());
    }

    /// `n` distinct GREASE-like ids (0x1f * k + 0x21) with value 0.
    fn distinct(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for k in 0..n {
            varint::encode(0x1f * (k + 100) + 0x21, &mut out);
            varint::encode(0, &mut out);
        }
        out
    }

    #[test]
    fn pair_cap_and_linear_duplicate_check() {
        let ok = Settings::decode_payload(&distinct(MAX_SETTINGS_PAIRS as u64)).unwrap();
        assert_eq!(ok.pairs().len(), MAX_SETTINGS_PAIRS);
        // A duplicate as the last of the allowed pairs is still found.
        let mut dup = distinct(MAX_SETTINGS_PAIRS as u64 - 1);
        varint::encode(0x1f * 100 + 0x21, &mut dup);
        varint::encode(0, &mut dup);
        assert_eq!(
            Settings::decode_payload(&dup).unwrap_err().code,
            H3_SETTINGS_ERROR
        );
        // A 64 KiB frame of ~13 000 distinct ids: refused, and quickly.
        let big = distinct(13_000);
        assert!(big.len() <= 64 * 1024);
        let t0 = std::time::Instant::now();
        let result = Settings::decode_payload(&big).map(|s| s.pairs().len());
        assert_eq!(result.map_err(|e| e.code), Err(H3_EXCESSIVE_LOAD));
        assert!(
            t0.elapsed() < std::time::Duration::from_millis(5),
            "{:?}",
            t0.elapsed()
        );
    }
}

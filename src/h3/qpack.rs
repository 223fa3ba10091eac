//! QPACK (RFC 9204) restricted to what wtd needs: wtd advertises
//! `SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0`, so field sections use only the static table and
//! literals, and the only encoder-stream instruction a peer may send is "Set Dynamic Table
//! Capacity 0".

use super::huffman;
use std::fmt;

/// A QPACK failure, carrying the HTTP/3 error code it maps to (RFC 9204 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QpackError {
    /// A field section could not be decoded (QPACK_DECOMPRESSION_FAILED, 0x200).
    Decompression(String),
    /// The peer's encoder stream carried an invalid instruction (QPACK_ENCODER_STREAM_ERROR, 0x201).
    EncoderStream(String),
    /// A field section exceeded the [`FieldLimits`] while decoding (decoding stopped there).
    /// A server answers such a request with HTTP 431; elsewhere it maps to H3_EXCESSIVE_LOAD.
    TooLarge(String),
}

impl QpackError {
    /// The HTTP/3 error code to close the connection with.
    pub fn h3_code(&self) -> u64 {
        match self {
            QpackError::Decompression(_) => 0x200,
            QpackError::EncoderStream(_) => 0x201,
            QpackError::TooLarge(_) => super::errors::H3_EXCESSIVE_LOAD,
        }
    }
}

impl fmt::Display for QpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QpackError::Decompression(m) => write!(f, "QPACK decompression failed: {m}"),
            QpackError::EncoderStream(m) => write!(f, "QPACK encoder stream error: {m}"),
            QpackError::TooLarge(m) => write!(f, "field section too large: {m}"),
        }
    }
}

impl std::error::Error for QpackError {}

fn dec_err(msg: impl Into<String>) -> QpackError {
    QpackError::Decompression(msg.into())
}

/// The QPACK static table (RFC 9204 Appendix A): `(name, value)` by index.
#[rustfmt::skip]
pub const STATIC_TABLE: [(&str, &str); 99] = [
    (":authority", ""),
    (":path", "/"),
    ("age", "0"),
    ("content-disposition", ""),
    ("content-length", "0"),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("referer", ""),
    ("set-cookie", ""),
    (":method", "CONNECT"),
    (":method", "DELETE"),
    (":method", "GET"),
    (":method", "HEAD"),
    (":method", "OPTIONS"),
    (":method", "POST"),
    (":method", "PUT"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "103"),
    (":status", "200"),
    (":status", "304"),
    (":status", "404"),
    (":status", "503"),
    ("accept", "*/*"),
    ("accept", "application/dns-message"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-ranges", "bytes"),
    ("access-control-allow-headers", "cache-control"),
    ("access-control-allow-headers", "content-type"),
    ("access-control-allow-origin", "*"),
    ("cache-control", "max-age=0"),
    ("cache-control", "max-age=2592000"),
    ("cache-control", "max-age=604800"),
    ("cache-control", "no-cache"),
    ("cache-control", "no-store"),
    ("cache-control", "public, max-age=31536000"),
    ("content-encoding", "br"),
    ("content-encoding", "gzip"),
    ("content-type", "application/dns-message"),
    ("content-type", "application/javascript"),
    ("content-type", "application/json"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "image/gif"),
    ("content-type", "image/jpeg"),
    ("content-type", "image/png"),
    ("content-type", "text/css"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("range", "bytes=0-"),
    ("strict-transport-security", "max-age=31536000"),
    ("strict-transport-security", "max-age=31536000; includesubdomains"),
    ("strict-transport-security", "max-age=31536000; includesubdomains; preload"),
    ("vary", "accept-encoding"),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    (":status", "100"),
    (":status", "204"),
    (":status", "206"),
    (":status", "302"),
    (":status", "400"),
    (":status", "403"),
    (":status", "421"),
    (":status", "425"),
    (":status", "500"),
    ("accept-language", ""),
    ("access-control-allow-credentials", "FALSE"),
    ("access-control-allow-credentials", "TRUE"),
    ("access-control-allow-headers", "*"),
    ("access-control-allow-methods", "get"),
    ("access-control-allow-methods", "get, post, options"),
    ("access-control-allow-methods", "options"),
    ("access-control-expose-headers", "content-length"),
    ("access-control-request-headers", "content-type"),
    ("access-control-request-method", "get"),
    ("access-control-request-method", "post"),
    ("alt-svc", "clear"),
    ("authorization", ""),
    ("content-security-policy", "script-src 'none'; object-src 'none'; base-uri 'none'"),
    ("early-data", "1"),
    ("expect-ct", ""),
    ("forwarded", ""),
    ("if-range", ""),
    ("origin", ""),
    ("purpose", "prefetch"),
    ("server", ""),
    ("timing-allow-origin", "*"),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", ""),
    ("x-forwarded-for", ""),
    ("x-frame-options", "deny"),
    ("x-frame-options", "sameorigin"),
];

/// Largest prefix-coded integer accepted (2^62, the largest HTTP/3 varint range bound).
const MAX_INT: u64 = 1 << 62;

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends `value` as an RFC 7541 §5.1 prefix integer: `first` holds the bits above the
/// `prefix`-bit field.
fn put_int(out: &mut Vec<u8>, first: u8, prefix: u8, mut value: u64) {
    let max = (1u64 << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a non-Huffman string literal whose length uses a `prefix`-bit integer after `first`.
fn put_str(out: &mut Vec<u8>, first: u8, prefix: u8, s: &str) {
    put_int(out, first, prefix, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Encodes a field section using only the static table and non-Huffman literals: an indexed
/// static field line for an exact match, a literal with static name reference when only the
/// name matches, and a literal with literal name otherwise. The prefix is `00 00`.
pub fn encode_field_section(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0x00, 0x00];
    for &(name, value) in fields {
        if let Some(i) = STATIC_TABLE.iter().position(|&e| e == (name, value)) {
            // Indexed field line: 1 T=1 index(6).
            put_int(&mut out, 0xc0, 6, i as u64);
        } else if let Some(i) = STATIC_TABLE.iter().position(|&(n, _)| n == name) {
            // Literal with name reference: 0 1 N=0 T=1 index(4), then value H=0 len(7).
            put_int(&mut out, 0x50, 4, i as u64);
            put_str(&mut out, 0x00, 7, value);
        } else {
            // Literal with literal name: 0 0 1 N=0 H=0 len(3), name, then value H=0 len(7).
            put_str(&mut out, 0x20, 3, name);
            put_str(&mut out, 0x00, 7, value);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A cursor over a field section.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&self) -> Result<u8, QpackError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| dec_err("truncated field section"))
    }

    /// Reads an RFC 7541 §5.1 prefix integer whose first byte is the current byte.
    fn int(&mut self, prefix: u8) -> Result<u64, QpackError> {
        let max = (1u64 << prefix) - 1;
        let mut value = (self.byte()? as u64) & max;
        self.pos += 1;
        if value < max {
            return Ok(value);
        }
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            self.pos += 1;
            if shift > 56 {
                return Err(dec_err("prefix integer too long"));
            }
            value += ((b & 0x7f) as u64) << shift;
            if value > MAX_INT {
                return Err(dec_err("prefix integer overflow"));
            }
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// Reads a string literal whose H bit sits just above a `prefix`-bit length.
    fn string(&mut self, prefix: u8) -> Result<Vec<u8>, QpackError> {
        let huffman = self.byte()? & (1 << prefix) != 0;
        let len = self.int(prefix)?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if len > remaining {
            return Err(dec_err("string literal longer than the field section"));
        }
        let raw = &self.buf[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        if huffman {
            huffman::decode(raw).map_err(|e| dec_err(e.to_string()))
        } else {
            Ok(raw.to_vec())
        }
    }
}

fn static_entry(index: u64) -> Result<(&'static str, &'static str), QpackError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| STATIC_TABLE.get(i).copied())
        .ok_or_else(|| dec_err(format!("static table index {index} out of range")))
}

/// `true` for an HTTP field-name token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks a literal field name: non-empty, token characters, optionally after one leading ':'.
fn check_name(name: Vec<u8>) -> Result<String, QpackError> {
    let body = name.strip_prefix(b":").unwrap_or(&name);
    if body.is_empty() || !body.iter().all(|&b| is_tchar(b)) {
        return Err(dec_err(format!(
            "invalid field name {:?}",
            String::from_utf8_lossy(&name)
        )));
    }
    String::from_utf8(name).map_err(|_| dec_err("field name is not UTF-8"))
}

fn to_utf8(value: Vec<u8>) -> Result<String, QpackError> {
    String::from_utf8(value).map_err(|_| dec_err("field value is not UTF-8"))
}

/// Bounds on a decoded field section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLimits {
    /// Largest decoded size, counted as RFC 9114 §4.2.2 does: name + value + 32 per field.
    pub max_size: usize,
    /// Most field lines.
    pub max_fields: usize,
}

impl FieldLimits {
    /// What wtd advertises (SETTINGS_MAX_FIELD_SECTION_SIZE) and enforces on every header block
    /// it receives: [`MAX_FIELD_SECTION_SIZE`] bytes and [`MAX_FIELDS`] lines.
    pub const WTD: FieldLimits = FieldLimits {
        max_size: MAX_FIELD_SECTION_SIZE,
        max_fields: MAX_FIELDS,
    };
    /// No practical bound (tests and tools only).
    pub const UNLIMITED: FieldLimits = FieldLimits {
        max_size: usize::MAX,
        max_fields: usize::MAX,
    };
}

/// The decoded field-section size wtd accepts and advertises (16 KiB; Chromium and wtq advertise
/// the same, pywebtransport 64 KiB; the largest real CONNECT seen is about 250 bytes).
pub const MAX_FIELD_SECTION_SIZE: usize = 16 * 1024;
/// The most field lines wtd accepts in one header block (real CONNECTs carry 5 to 7).
pub const MAX_FIELDS: usize = 64;

/// Per-field overhead in the field-section size (RFC 9114 §4.2.2, RFC 9204 §3.2.1).
const FIELD_OVERHEAD: usize = 32;

/// Decodes a field section that references only the static table, with no size limit (see
/// [`decode_field_section_limited`]).
pub fn decode_field_section(block: &[u8]) -> Result<Vec<(String, String)>, QpackError> {
    decode_field_section_limited(block, FieldLimits::UNLIMITED)
}

/// Decodes a field section that references only the static table. Any dynamic-table reference,
/// a non-zero Required Insert Count, a malformed integer or string, an invalid name or a
/// non-UTF-8 name/value is a [`QpackError::Decompression`]. Decoding stops with
/// [`QpackError::TooLarge`] as soon as the fields decoded so far exceed `limits`, so a small
/// block of 1-byte indexed lines cannot expand into megabytes. Field values are returned as sent
/// (no check for CR/LF/NUL: that is an HTTP message-validity question for the caller).
pub fn decode_field_section_limited(
    block: &[u8],
    limits: FieldLimits,
) -> Result<Vec<(String, String)>, QpackError> {
    let mut r = Reader { buf: block, pos: 0 };
    let ric = r.int(8)?;
    if ric != 0 {
        return Err(dec_err(format!(
            "Required Insert Count {ric} but the dynamic table capacity is 0"
        )));
    }
    // Sign bit + Delta Base: meaningless without dynamic references; parse and ignore.
    r.int(7)?;

    let mut fields = Vec::new();
    let mut size = 0usize;
    let mut admit = |name: &str, value: &str| -> Result<(), QpackError> {
        size = size.saturating_add(name.len() + value.len() + FIELD_OVERHEAD);
        if size > limits.max_size {
            return Err(QpackError::TooLarge(format!(
                "more than {} bytes of fields",
                limits.max_size
            )));
        }
        Ok(())
    };
    while r.pos < block.len() {
        if fields.len() >= limits.max_fields {
            return Err(QpackError::TooLarge(format!(
                "more than {} fields",
                limits.max_fields
            )));
        }
        let b = r.byte()?;
        if b & 0x80 != 0 {
            // Indexed field line: 1 T index(6).
            if b & 0x40 == 0 {
                return Err(dec_err("indexed field line references the dynamic table"));
            }
            let (n, v) = static_entry(r.int(6)?)?;
            admit(n, v)?;
            fields.push((n.to_string(), v.to_string()));
        } else if b & 0x40 != 0 {
            // Literal with name reference: 0 1 N T index(4).
            if b & 0x10 == 0 {
                return Err(dec_err("literal name reference into the dynamic table"));
            }
            let (n, _) = static_entry(r.int(4)?)?;
            let value = to_utf8(r.string(7)?)?;
            admit(n, &value)?;
            fields.push((n.to_string(), value));
        } else if b & 0x20 != 0 {
            // Literal with literal name: 0 0 1 N H len(3).
            let name = check_name(r.string(3)?)?;
            let value = to_utf8(r.string(7)?)?;
            admit(&name, &value)?;
            fields.push((name, value));
        } else {
            // 0001xxxx indexed post-base, 0000xxxx literal with post-base name reference.
            return Err(dec_err("post-base reference into the dynamic table"));
        }
    }
    Ok(fields)
}

// ---------------------------------------------------------------------------------------------
// Encoder stream

/// Incremental parser for the peer's QPACK encoder stream (RFC 9204 §4.3) when wtd advertised
/// a dynamic table capacity of 0: only "Set Dynamic Table Capacity 0" is valid (Chromium sends it
/// even to a capacity-0 peer). Because 0 fits in the 5-bit prefix, that instruction is always
/// the single byte `0x20`, so every byte is a complete instruction and splits need no buffering.
#[derive(Debug, Default)]
pub struct EncoderStreamReader {
    failed: Option<QpackError>,
}

impl EncoderStreamReader {
    /// A reader at the start of the stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes the next bytes of the encoder stream (split anywhere). Any instruction other than
    /// "Set Dynamic Table Capacity 0" is a [`QpackError::EncoderStream`]; after an error every
    /// further call fails too.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), QpackError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        for &b in data {
            let err = match b {
                0x20 => continue,
                0x21..=0x3e => format!("Set Dynamic Table Capacity {} exceeds 0", b & 0x1f),
                0x3f => "Set Dynamic Table Capacity above 30 exceeds 0".to_string(),
                0x80..=0xff => "Insert with Name Reference with capacity 0".to_string(),
                0x40..=0x7f => "Insert with Literal Name with capacity 0".to_string(),
                _ => "Duplicate with capacity 0".to_string(),
            };
            let e = QpackError::EncoderStream(err);
            self.failed = Some(e.clone());
            return Err(e);
        }
        Ok(())
    }
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

    fn owned(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|&(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn dec(block: &[u8]) -> Vec<(String, String)> {
        decode_field_section(block).unwrap()
    }

    /// Appends a string literal: `first` = pattern bits above the H bit, `prefix` = length bits.
    fn lit(out: &mut Vec<u8>, first: u8, prefix: u8, s: &str, huff: bool) {
        if huff {
            let h = huffman::encode(s.as_bytes());
            put_int(out, first | (1 << prefix), prefix, h.len() as u64);
            out.extend_from_slice(&h);
        } else {
            put_int(out, first, prefix, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }

    /// Literal with static name reference (`01 N=0 T=1`), value literal.
    fn name_ref(out: &mut Vec<u8>, index: u64, value: &str, huff: bool) {
        put_int(out, 0x50, 4, index);
        lit(out, 0x00, 7, value, huff);
    }

    /// Literal with literal name (`001 N=0 H`), then value literal.
    fn lit_name(out: &mut Vec<u8>, name: &str, name_huff: bool, value: &str, value_huff: bool) {
        lit(out, 0x20, 3, name, name_huff);
        lit(out, 0x00, 7, value, value_huff);
    }

    #[test]
    fn static_table_spot_checks() {
        assert_eq!(STATIC_TABLE[0], (":authority", ""));
        assert_eq!(STATIC_TABLE[15], (":method", "CONNECT"));
        assert_eq!(STATIC_TABLE[23], (":scheme", "https"));
        assert_eq!(STATIC_TABLE[24], (":status", "103"));
        assert_eq!(STATIC_TABLE[25], (":status", "200"));
        assert_eq!(STATIC_TABLE[27], (":status", "404"));
        assert_eq!(STATIC_TABLE[63], (":status", "100"));
        assert_eq!(STATIC_TABLE[71], (":status", "500"));
        assert_eq!(STATIC_TABLE[90], ("origin", ""));
        assert_eq!(STATIC_TABLE[95], ("user-agent", ""));
        assert_eq!(STATIC_TABLE[98], ("x-frame-options", "sameorigin"));
    }

    // ---- real peer bytes (WIRE-FACTS §2.2) ----

    #[test]
    fn aioquic_response() {
        // `:status 200` indexed static 25 (d9) + literal with literal name, Huffman name (2f 0d:
        // H=1, length 7+13=20) and Huffman value (85: length 5).
        let block = hex("0000d92f0d4148b782c69b07522b3d895a74a6b65692c1ca9f8592c1ca900b");
        assert_eq!(
            dec(&block),
            owned(&[
                (":status", "200"),
                ("sec-webtransport-http3-draft", "draft02")
            ])
        );
    }

    #[test]
    fn wtr_response() {
        // WIRE-FACTS: `0000 5f09 82 1001`. 5f = 0101_1111: literal with name reference, N=0, T=1,
        // 4-bit index saturated (15) + continuation 09 = 24, the `:status 103` entry; value 82 =
        // Huffman, 2 bytes; 10 01 = 00010 00000 00000 1 = "2" "0" "0" + one padding bit. Decodes
        // as written to `:status 200`.
        assert_eq!(dec(&hex("00005f09821001")), owned(&[(":status", "200")]));
    }

    #[test]
    fn pywt_response() {
        assert_eq!(dec(&hex("0000d9")), owned(&[(":status", "200")]));
    }

    #[test]
    fn wtq_response() {
        // 27 15: literal name, N=0 H=0, 3-bit length saturated (7) + 0x15 = 28 bytes.
        let mut block = hex("0000d92715");
        block.extend_from_slice(b"sec-webtransport-http3-draft");
        block.push(0x07);
        block.extend_from_slice(b"draft02");
        assert_eq!(
            dec(&block),
            owned(&[
                (":status", "200"),
                ("sec-webtransport-http3-draft", "draft02")
            ])
        );
    }

    #[test]
    fn wtq_connect() {
        // Indexed static 23, 15 (d7 cf); name-ref 0 and 1 (50, 51) with plain values;
        // `:protocol` literal name `27 02 3a70726f746f636f6c`, value `0c 7765627472616e73706f7274`.
        let mut block = hex("0000d7cf");
        block.extend_from_slice(&hex("500e"));
        block.extend_from_slice(b"localhost:4433");
        block.extend_from_slice(&hex("5105"));
        block.extend_from_slice(b"/echo");
        block.extend_from_slice(&hex("27023a70726f746f636f6c0c7765627472616e73706f7274"));
        assert_eq!(
            dec(&block),
            owned(&[
                (":scheme", "https"),
                (":method", "CONNECT"),
                (":authority", "localhost:4433"),
                (":path", "/echo"),
                (":protocol", "webtransport"),
            ])
        );
        // Our encoder produces exactly these bytes for the same fields.
        assert_eq!(
            encode_field_section(&[
                (":scheme", "https"),
                (":method", "CONNECT"),
                (":authority", "localhost:4433"),
                (":path", "/echo"),
                (":protocol", "webtransport"),
            ]),
            block
        );
    }

    #[test]
    fn chromium_static_only_connect() {
        let mut block = hex("0000d7cf");
        name_ref(&mut block, 0, "127.0.0.1:4433", true);
        name_ref(&mut block, 1, "/echo", true);
        lit_name(&mut block, ":protocol", true, "webtransport", true);
        lit_name(
            &mut block,
            "sec-webtransport-http3-draft02",
            true,
            "1",
            false,
        );
        name_ref(&mut block, 90, "http://localhost:8000", true);
        // Name-ref 90 needs a continuation byte: 5f 4b (15 + 75).
        assert!(block.windows(2).any(|w| w == [0x5f, 0x4b]));
        assert_eq!(
            dec(&block),
            owned(&[
                (":scheme", "https"),
                (":method", "CONNECT"),
                (":authority", "127.0.0.1:4433"),
                (":path", "/echo"),
                (":protocol", "webtransport"),
                ("sec-webtransport-http3-draft02", "1"),
                ("origin", "http://localhost:8000"),
            ])
        );
    }

    #[test]
    fn pywt021_connect() {
        let mut block = hex("0000cfd7");
        name_ref(&mut block, 0, "127.0.0.1:4433", true);
        name_ref(&mut block, 1, "/echo", true);
        lit_name(&mut block, ":protocol", true, "webtransport-h3", true);
        name_ref(&mut block, 95, "PyWebTransport/0.21.1", true);
        assert!(block.windows(2).any(|w| w == [0x5f, 0x50])); // 15 + 80 = 95
        assert_eq!(
            dec(&block),
            owned(&[
                (":method", "CONNECT"),
                (":scheme", "https"),
                (":authority", "127.0.0.1:4433"),
                (":path", "/echo"),
                (":protocol", "webtransport-h3"),
                ("user-agent", "PyWebTransport/0.21.1"),
            ])
        );
    }

    #[test]
    fn wtr_connect_scheme_via_http_entry() {
        // wtr: name-ref static 22 (`:scheme http`) with literal value "https", Huffman everywhere.
        let mut block = hex("0000");
        name_ref(&mut block, 0, "localhost:4433", true);
        block.push(0xcf);
        name_ref(&mut block, 1, "/echo", true);
        lit_name(&mut block, ":protocol", true, "webtransport", true);
        name_ref(&mut block, 22, "https", true);
        assert_eq!(
            dec(&block),
            owned(&[
                (":authority", "localhost:4433"),
                (":method", "CONNECT"),
                (":path", "/echo"),
                (":protocol", "webtransport"),
                (":scheme", "https"),
            ])
        );
    }

    // ---- encoder ----

    #[test]
    fn round_trips() {
        let sets: &[&[(&str, &str)]] = &[
            &[(":status", "200")],
            &[(":status", "404")],
            &[
                (":status", "200"),
                ("sec-webtransport-http3-draft", "draft02"),
            ],
            &[
                (":method", "CONNECT"),
                (":scheme", "https"),
                (":authority", "127.0.0.1:4433"),
                (":path", "/echo?x=1"),
                (":protocol", "webtransport"),
                ("sec-webtransport-http3-draft02", "1"),
                ("origin", "https://example.com"),
                ("user-agent", "wtd/0.1"),
            ],
            &[
                (":method", "CONNECT"),
                (":protocol", "webtransport-h3"),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", "/"),
            ],
            &[("x-long", &"v".repeat(300)), (&"n".repeat(200), "")],
            &[],
        ];
        for fields in sets {
            let block = encode_field_section(fields);
            assert_eq!(&block[..2], &[0, 0]);
            assert_eq!(dec(&block), owned(fields));
        }
        assert_eq!(encode_field_section(&[(":status", "200")]), hex("0000d9"));
        assert_eq!(encode_field_section(&[(":status", "404")]), hex("0000db"));
        // Not in the table: name-ref 24 (first `:status`) with a literal value.
        assert_eq!(
            encode_field_section(&[(":status", "429")]),
            hex("00005f0903343239")
        );
    }

    // ---- errors ----

    fn is_decomp_err(block: &[u8]) -> bool {
        matches!(
            decode_field_section(block),
            Err(QpackError::Decompression(_))
        )
    }

    #[test]
    fn rejects_dynamic_references() {
        assert!(is_decomp_err(&hex("000080"))); // indexed, T=0
        assert!(is_decomp_err(&hex("000040014161"))); // name-ref, T=0
        assert!(is_decomp_err(&hex("000010"))); // indexed post-base
        assert!(is_decomp_err(&hex("0000000161"))); // literal post-base name ref
                                                    // Chromium's dynamic block at capacity 4096.
        assert!(is_decomp_err(&hex("0600d7cf8483828180")));
    }

    #[test]
    fn rejects_nonzero_required_insert_count() {
        assert!(is_decomp_err(&hex("0100d9")));
        assert!(is_decomp_err(&hex("ff0100d9")));
        // Delta Base is ignored when RIC is 0, even with the sign bit set.
        assert_eq!(dec(&hex("0081d9")), owned(&[(":status", "200")]));
    }

    #[test]
    fn rejects_truncated_blocks() {
        assert!(is_decomp_err(&[]));
        assert!(is_decomp_err(&[0x00]));
        assert_eq!(dec(&hex("0000")), vec![]);
        let full = encode_field_section(&[
            (":status", "200"),
            ("sec-webtransport-http3-draft", "draft02"),
            (":status", "429"),
        ]);
        // Valid cut points: after the prefix and after each complete field line.
        let ok_cut = [2usize, 3, 3 + 2 + 28 + 1 + 7, full.len()];
        for cut in 0..full.len() {
            let r = decode_field_section(&full[..cut]);
            assert_eq!(r.is_ok(), ok_cut.contains(&cut), "cut at {cut}: {r:?}");
        }
        // Truncated multi-byte integer.
        assert!(is_decomp_err(&hex("00005f")));
        assert!(is_decomp_err(&hex("00005f89")));
    }

    #[test]
    fn rejects_integer_overflow() {
        let big = hex("ffffffffffffffffffffff7f");
        assert!(is_decomp_err(&big));
        let mut b = hex("0000");
        b.extend_from_slice(&hex("5f ffffffffffffffffffff7f"));
        assert!(is_decomp_err(&b));
        // Overlong run of zero continuation bytes.
        assert!(is_decomp_err(&hex("0000 5f 8080808080808080808000")));
        // A large but legal integer used as a string length past the end.
        assert!(is_decomp_err(&hex("0000 51 7f ffffffff0f")));
    }

    #[test]
    fn rejects_string_past_end() {
        assert!(is_decomp_err(&hex("0000 51 05 2f6563")));
        assert!(is_decomp_err(&hex("0000 23 3a70")));
        assert!(is_decomp_err(&hex("0000 2f 0d 4148")));
    }

    #[test]
    fn rejects_bad_strings_and_names() {
        assert!(is_decomp_err(&hex("0000 51 01 ff"))); // non-UTF-8 value
        assert!(is_decomp_err(&hex("0000 51 81 00"))); // bad Huffman padding
        assert!(is_decomp_err(&hex("0000 51 84 ffffffff"))); // Huffman EOS
        assert!(is_decomp_err(&hex("0000 20 00"))); // empty name
        assert!(is_decomp_err(&hex("0000 21 3a 00"))); // ":" alone
        assert!(is_decomp_err(&hex("0000 23 612062 00"))); // "a b"
        assert!(is_decomp_err(&hex("0000 22 61ff 00"))); // non-UTF-8 name
        assert!(is_decomp_err(&hex("0000 22 613a 00"))); // ':' inside the name
        assert!(is_decomp_err(&hex("0000 ff24"))); // static index 99
        assert!(is_decomp_err(&hex("0000 5f54 00"))); // name-ref index 99
        assert_eq!(dec(&hex("0000 22 4142 00")), owned(&[("AB", "")])); // uppercase allowed
        assert_eq!(
            dec(&hex("0000 ff23")),
            owned(&[("x-frame-options", "sameorigin")])
        );
    }

    #[test]
    fn error_codes_and_display() {
        let d = QpackError::Decompression("x".into());
        let e = QpackError::EncoderStream("y".into());
        assert_eq!(d.h3_code(), 0x200);
        assert_eq!(e.h3_code(), 0x201);
        assert!(d.to_string().contains("decompression") && d.to_string().contains('x'));
        assert!(e.to_string().contains("encoder stream") && e.to_string().contains('y'));
    }

    #[test]
    fn limits_stop_decoding_early() {
        // 60 000 one-byte indexed lines (static 58: 69 bytes each with the overhead).
        let mut block = vec![0x00, 0x00];
        block.extend(std::iter::repeat_n(0xfa, 60_000));
        assert_eq!(decode_field_section(&block).unwrap().len(), 60_000);
        let err = decode_field_section_limited(&block, FieldLimits::WTD).unwrap_err();
        assert!(matches!(err, QpackError::TooLarge(_)), "{err}");
        assert_eq!(err.h3_code(), crate::h3::errors::H3_EXCESSIVE_LOAD);
        // The count cap alone: 65 tiny fields (65 × 34 bytes, far below 16 KiB).
        let many: Vec<(String, String)> =
            (0..65).map(|i| (format!("x{i}"), String::new())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let block = encode_field_section(&refs);
        assert!(matches!(
            decode_field_section_limited(&block, FieldLimits::WTD),
            Err(QpackError::TooLarge(m)) if m.contains("fields")
        ));
        assert_eq!(
            decode_field_section_limited(&encode_field_section(&refs[..64]), FieldLimits::WTD)
                .unwrap()
                .len(),
            64
        );
        // Exactly at the size limit passes, one byte over fails.
        let value = "v".repeat(MAX_FIELD_SECTION_SIZE - 32 - 1);
        let ok = encode_field_section(&[("a", &value)]);
        assert!(decode_field_section_limited(&ok, FieldLimits::WTD).is_ok());
        let value = "v".repeat(MAX_FIELD_SECTION_SIZE - 32);
        let over = encode_field_section(&[("a", &value)]);
        assert!(matches!(
            decode_field_section_limited(&over, FieldLimits::WTD),
            Err(QpackError::TooLarge(_))
        ));
    }

    #[test]
    fn fuzz_never_panics() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds: Vec<Vec<u8>> = vec![
            hex("0000d92f0d4148b782c69b07522b3d895a74a6b65692c1ca9f8592c1ca900b"),
            hex("00005f09821001"),
            encode_field_section(&[
                (":method", "CONNECT"),
                (":protocol", "webtransport"),
                ("origin", "http://localhost:8000"),
            ]),
        ];
        let mut ok = 0;
        for i in 0..20_000 {
            let r = next();
            let block: Vec<u8> = if i % 2 == 0 {
                let len = (r % 48) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut b = seeds[(r % 3) as usize].clone();
                for _ in 0..=(r >> 8) % 4 {
                    let v = next();
                    let p = (v as usize) % b.len();
                    match (v >> 32) % 3 {
                        0 => b[p] = (v >> 40) as u8,
                        1 => b.truncate(p),
                        _ => b.insert(p, (v >> 40) as u8),
                    }
                    if b.is_empty() {
                        b.push(0);
                    }
                }
                b
            };
            if let Ok(fields) = decode_field_section(&block) {
                ok += 1;
                // Whatever decodes re-encodes and decodes to the same fields.
                let refs: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                assert_eq!(dec(&encode_field_section(&refs)), fields);
            }
        }
        assert!(ok > 0);
    }

    // ---- encoder stream ----

    #[test]
    fn encoder_stream_capacity_zero() {
        let mut r = EncoderStreamReader::new();
        assert_eq!(r.feed(&[]), Ok(()));
        assert_eq!(r.feed(&[0x20]), Ok(()));
        assert_eq!(r.feed(&[0x20, 0x20]), Ok(()));
        let mut r = EncoderStreamReader::new();
        for b in [0x20u8, 0x20, 0x20] {
            assert_eq!(r.feed(&[b]), Ok(()));
        }
    }

    #[test]
    fn encoder_stream_rejects_capacity_and_inserts() {
        // Set Dynamic Table Capacity 4096 (Chromium / pywt061 against a 4096 peer).
        let mut r = EncoderStreamReader::new();
        let e = r.feed(&hex("3fe11f")).unwrap_err();
        assert_eq!(e.h3_code(), 0x201);
        assert!(r.feed(&[0x20]).is_err(), "errors are sticky");
        // Split byte by byte: fails on the first byte already.
        let mut r = EncoderStreamReader::new();
        assert!(r.feed(&[0x3f]).is_err());
        // Capacity 1.
        assert!(EncoderStreamReader::new().feed(&[0x21]).is_err());
        // Valid capacity 0 first, then an insert with static name ref (`:authority` = "a").
        let mut r = EncoderStreamReader::new();
        assert_eq!(r.feed(&[0x20]), Ok(()));
        assert!(matches!(
            r.feed(&hex("c00161")),
            Err(QpackError::EncoderStream(_))
        ));
        // Insert with literal name, Duplicate.
        assert!(EncoderStreamReader::new().feed(&hex("4161 0162")).is_err());
        assert!(EncoderStreamReader::new().feed(&[0x00]).is_err());
        assert!(EncoderStreamReader::new().feed(&[0x20, 0x1f]).is_err());
    }
}

//! JSON datagrams: text in, compact JSON on the wire, compact JSON text out. Invalid input is a
//! WTD_ERR_SERIALIZATION error and nothing is sent or lost.

use std::time::Duration;

use super::transport::DatagramTransport;
use crate::error::{wtd_result, Error, Result};

fn compact(bytes: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::new(wtd_result::WTD_ERR_SERIALIZATION, format!("not UTF-8: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Error::new(
            wtd_result::WTD_ERR_SERIALIZATION,
            format!("invalid JSON: {e}"),
        )
    })?;
    Ok(v.to_string())
}

/// Validates `json`, compacts it and sends it like `send`.
pub fn send_json(
    t: &DatagramTransport,
    json: &[u8],
    priority: i32,
    ttl: Option<Duration>,
    timeout: Option<Duration>,
) -> Result<()> {
    let text = compact(json)?;
    t.send(text.as_bytes(), priority, ttl, timeout)
}

/// Receives the next datagram as compact JSON text. A datagram that is not valid JSON stays
/// queued (read it with plain receive) and the call fails with WTD_ERR_SERIALIZATION.
pub fn receive_json(t: &DatagramTransport, timeout: Option<Duration>) -> Result<String> {
    receive_json_where(t, timeout, |_| Ok(()))
}

/// [`receive_json`] where `fits` may also refuse the compact text (e.g. WTD_ERR_BUFFER_TOO_SMALL
/// for a caller's buffer); a refused datagram stays queued, like an invalid one.
pub fn receive_json_where(
    t: &DatagramTransport,
    timeout: Option<Duration>,
    fits: impl Fn(&str) -> Result<()>,
) -> Result<String> {
    let text = std::cell::RefCell::new(String::new());
    t.receive_where(timeout, |d| {
        let c = compact(d).inspect_err(|_| t.record_receive_error())?;
        fits(&c)?;
        *text.borrow_mut() = c;
        Ok(())
    })?;
    Ok(text.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_and_rejects() {
        assert_eq!(
            compact(br#"{ "a" : [1, 2 ,3] }"#).unwrap(),
            r#"{"a":[1,2,3]}"#
        );
        assert_eq!(
            compact(b"{").unwrap_err().code,
            wtd_result::WTD_ERR_SERIALIZATION
        );
        assert_eq!(
            compact(&[0xff, 0xfe]).unwrap_err().code,
            wtd_result::WTD_ERR_SERIALIZATION
        );
    }
}

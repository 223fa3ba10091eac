//! Structured datagrams (the seed's StructuredDatagramTransport), byte-compatible with
//! pywebtransport: `u16 big-endian type id || serializer output`. The serializer is the caller's
//! (C callbacks in the C API); this layer owns the framing and the registry of type ids.

use crate::lock::lock;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::transport::DatagramTransport;
use crate::error::{wtd_result, Error, Result};

fn serialization(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(wtd_result::WTD_ERR_SERIALIZATION, msg)
}

/// Frames a structured datagram.
pub fn encode(type_id: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&type_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a structured datagram into type id and body (WTD_ERR_SERIALIZATION if < 2 bytes).
pub fn decode(d: &[u8]) -> Result<(u16, &[u8])> {
    match d {
        [a, b, body @ ..] => Ok((u16::from_be_bytes([*a, *b]), body)),
        _ => Err(serialization(format!(
            "structured datagram of {} bytes has no 2-byte type id",
            d.len()
        ))),
    }
}

/// A structured transport over a datagram transport. Cheap to clone.
#[derive(Clone)]
pub struct StructuredTransport {
    transport: DatagramTransport,
    registry: Arc<Mutex<BTreeSet<u16>>>,
}

impl StructuredTransport {
    /// Wraps `transport` with an empty registry.
    pub fn new(transport: &DatagramTransport) -> Self {
        StructuredTransport {
            transport: transport.clone(),
            registry: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    /// Registers a type id; a duplicate is WTD_ERR_INVALID_ARGUMENT.
    pub fn register(&self, type_id: u16) -> Result<()> {
        if !lock(&self.registry).insert(type_id) {
            return Err(Error::invalid(format!(
                "type id {type_id} is already registered"
            )));
        }
        Ok(())
    }

    /// True when `type_id` is registered.
    pub fn is_registered(&self, type_id: u16) -> bool {
        lock(&self.registry).contains(&type_id)
    }

    /// Sends a serialized object of a registered type (unregistered: WTD_ERR_SERIALIZATION,
    /// nothing sent).
    pub fn send_obj(
        &self,
        type_id: u16,
        body: &[u8],
        priority: i32,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
    ) -> Result<()> {
        if !self.is_registered(type_id) {
            return Err(serialization(format!(
                "type id {type_id} is not registered"
            )));
        }
        self.transport
            .send(&encode(type_id, body), priority, ttl, timeout)
    }

    /// Sends an object of a registered type whose body `fill` writes into the buffer it is given
    /// (room for the largest body one datagram can carry) and whose length it returns; this layer
    /// writes the 2-byte type id in front. Unregistered type, `fill` failing or claiming more
    /// than the room: WTD_ERR_SERIALIZATION and nothing is sent; closed: WTD_ERR_CLOSED.
    pub fn send_with(
        &self,
        type_id: u16,
        priority: i32,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
        fill: impl FnOnce(&mut [u8]) -> Result<usize>,
    ) -> Result<()> {
        if !self.is_registered(type_id) {
            return Err(serialization(format!(
                "type id {type_id} is not registered"
            )));
        }
        if self.transport.is_closed() {
            return Err(Error::closed("transport is closed"));
        }
        let room = self.transport.max_datagram_size().saturating_sub(2);
        let mut buf = vec![0u8; 2 + room];
        buf[..2].copy_from_slice(&type_id.to_be_bytes());
        let len = fill(&mut buf[2..])?;
        if len > room {
            return Err(serialization(format!(
                "serializer reported {len} bytes for a {room}-byte buffer"
            )));
        }
        buf.truncate(2 + len);
        self.transport.send(&buf, priority, ttl, timeout)
    }

    /// Receives the next structured datagram and hands its type id and body to `parse`. A
    /// datagram that cannot be framed, is of an unregistered type, or that `parse` refuses is
    /// consumed and counted as a receive error (it can never become valid).
    pub fn receive_with<T>(
        &self,
        timeout: Option<Duration>,
        parse: impl FnOnce(u16, &[u8]) -> Result<T>,
    ) -> Result<T> {
        let (id, body) = self.receive_obj(timeout)?;
        parse(id, &body).inspect_err(|_| self.transport.record_receive_error())
    }

    /// Receives the next structured datagram: (type id, body). A datagram shorter than 2 bytes
    /// or with an unregistered type id is consumed, counted as a receive error and reported as
    /// WTD_ERR_SERIALIZATION (it can never become valid, so it must not block the queue).
    pub fn receive_obj(&self, timeout: Option<Duration>) -> Result<(u16, Bytes)> {
        let r = self.transport.receive(timeout)?;
        let checked = decode(&r.data).and_then(|(id, _)| {
            if self.is_registered(id) {
                Ok(id)
            } else {
                Err(serialization(format!("received unregistered type id {id}")))
            }
        });
        match checked {
            Ok(id) => Ok((id, r.data.slice(2..))),
            Err(e) => {
                self.transport.record_receive_error();
                Err(e)
            }
        }
    }

    /// The underlying transport.
    pub fn transport(&self) -> &DatagramTransport {
        &self.transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_matches_pywebtransport() {
        // pywebtransport: struct.pack("!H", type_id) + serializer.serialize(obj)
        assert_eq!(encode(1, br#"{"x":1}"#), b"\x00\x01{\"x\":1}");
        assert_eq!(encode(0x1234, b""), [0x12, 0x34]);
        assert_eq!(decode(b"\x01\x02abc").unwrap(), (0x0102, &b"abc"[..]));
        assert_eq!(
            decode(b"\x01").unwrap_err().code,
            wtd_result::WTD_ERR_SERIALIZATION
        );
        assert_eq!(
            decode(b"").unwrap_err().code,
            wtd_result::WTD_ERR_SERIALIZATION
        );
    }
}

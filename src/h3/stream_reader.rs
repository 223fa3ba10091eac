//! Reads varints and HTTP/3 frames from a quinn receive stream.

use super::errors::{H3Error, H3_EXCESSIVE_LOAD, H3_FRAME_ERROR};
use super::frame::{self, MAX_FRAME_PAYLOAD};
use super::varint;

/// Why a stream stopped yielding data.
#[derive(Debug)]
pub enum StreamEnd {
    /// The peer broke HTTP/3: close the connection with this error.
    Protocol(H3Error),
    /// The peer reset the stream with this code.
    Reset(u64),
    /// The connection is gone.
    ConnectionLost(quinn::ConnectionError),
}

impl From<H3Error> for StreamEnd {
    fn from(e: H3Error) -> Self {
        StreamEnd::Protocol(e)
    }
}

/// A buffered reader over a quinn receive stream.
pub struct StreamReader {
    recv: quinn::RecvStream,
    buf: Vec<u8>,
    fin: bool,
}

impl StreamReader {
    /// Wraps a receive stream.
    pub fn new(recv: quinn::RecvStream) -> Self {
        StreamReader {
            recv,
            buf: Vec::new(),
            fin: false,
        }
    }

    /// Reads more bytes into the buffer; `false` at FIN.
    async fn fill(&mut self) -> Result<bool, StreamEnd> {
        if self.fin {
            return Ok(false);
        }
        match self.recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => {
                self.buf.extend_from_slice(&chunk.bytes);
                Ok(true)
            }
            Ok(None) => {
                self.fin = true;
                Ok(false)
            }
            Err(quinn::ReadError::Reset(code)) => Err(StreamEnd::Reset(code.into_inner())),
            Err(quinn::ReadError::ConnectionLost(e)) => Err(StreamEnd::ConnectionLost(e)),
            Err(e) => Err(StreamEnd::Protocol(H3Error::new(
                super::errors::H3_INTERNAL_ERROR,
                format!("stream read failed: {e}"),
            ))),
        }
    }

    /// The next varint; `None` at a clean FIN before its first byte.
    pub async fn read_varint(&mut self) -> Result<Option<u64>, StreamEnd> {
        loop {
            if let Some((v, n)) = varint::decode(&self.buf) {
                self.buf.drain(..n);
                return Ok(Some(v));
            }
            if !self.fill().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(H3Error::new(H3_FRAME_ERROR, "stream ended inside a varint").into());
            }
        }
    }

    /// The payload of a frame whose type was already read (length ≤ 64 KiB).
    pub async fn read_frame_payload(&mut self) -> Result<Vec<u8>, StreamEnd> {
        let len = self
            .read_varint()
            .await?
            .ok_or_else(|| H3Error::new(H3_FRAME_ERROR, "stream ended inside a frame header"))?;
        if len > MAX_FRAME_PAYLOAD {
            return Err(H3Error::new(H3_EXCESSIVE_LOAD, format!("{len}-byte frame")).into());
        }
        let len = len as usize;
        while self.buf.len() < len {
            if !self.fill().await? {
                return Err(H3Error::new(H3_FRAME_ERROR, "stream ended inside a frame").into());
            }
        }
        Ok(self.buf.drain(..len).collect())
    }

    /// The next whole frame `(type, payload)`; `None` at a clean FIN between frames.
    /// HTTP/2-only frame types are rejected.
    pub async fn next_frame(&mut self) -> Result<Option<(u64, Vec<u8>)>, StreamEnd> {
        let Some(ty) = self.read_varint().await? else {
            return Ok(None);
        };
        frame::check_not_http2(ty)?;
        Ok(Some((ty, self.read_frame_payload().await?)))
    }

    /// Takes whatever is buffered, then the next chunk from the stream; `None` at FIN.
    pub async fn next_bytes(&mut self) -> Result<Option<Vec<u8>>, StreamEnd> {
        if self.buf.is_empty() && !self.fill().await? {
            return Ok(None);
        }
        Ok(Some(std::mem::take(&mut self.buf)))
    }

    /// Tells the peer to stop sending on this stream.
    pub fn stop(&mut self, code: u64) {
        let _ = self
            .recv
            .stop(quinn::VarInt::from_u64(code).unwrap_or(quinn::VarInt::MAX));
    }
}

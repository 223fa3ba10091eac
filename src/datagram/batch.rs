//! One batch receive for sessions and transports: wait up to a timeout for the first datagram,
//! then take what is already queued, each into the next caller buffer, stopping at the first
//! that does not fit (it stays queued). `wtd_session_receive_batch` and
//! `wtd_transport_receive_batch` are both this loop, so they cannot drift apart.

use std::cell::Cell;
use std::time::Duration;

use super::transport::DatagramTransport;
use crate::error::{wtd_result, Error, Result};
use crate::session::Session;

/// Caller buffers a batch is received into.
pub trait Slots {
    /// How many buffers there are (at least 1 for [`receive_into`]).
    fn count(&self) -> usize;
    /// Buffer `i`'s bytes.
    fn buf(&mut self, i: usize) -> &mut [u8];
    /// Records the length written into buffer `i` (or, for buffer 0 on
    /// WTD_ERR_BUFFER_TOO_SMALL, the size needed).
    fn set_len(&mut self, i: usize, len: usize);
}

/// Something datagrams are received from.
pub trait BatchSource {
    /// Takes the next datagram into `buf` if it fits, waiting up to `timeout` (`None`: forever,
    /// `Some(ZERO)`: not at all), and returns its length. A datagram larger than `buf` stays
    /// queued: WTD_ERR_BUFFER_TOO_SMALL with its size in `needed`.
    fn take_into(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        needed: &mut usize,
    ) -> Result<usize>;

    /// The whole batch receive (see [`receive_into`]); `slots` holds at least one buffer. By
    /// default a waiting [`BatchSource::take_into`] for the first datagram, then
    /// [`BatchSource::take_more`].
    fn take_batch(&self, slots: &mut dyn Slots, timeout: Option<Duration>) -> Result<usize> {
        let mut needed = 0;
        match self.take_into(slots.buf(0), timeout, &mut needed) {
            Ok(len) => slots.set_len(0, len),
            Err(e) => {
                if e.code == wtd_result::WTD_ERR_BUFFER_TOO_SMALL {
                    slots.set_len(0, needed);
                }
                return Err(e);
            }
        }
        Ok(1 + self.take_more(slots, 1))
    }

    /// Takes already-queued datagrams, without waiting, into `slots[first..]` in order, stopping
    /// at the first that does not fit; returns how many were taken.
    fn take_more(&self, slots: &mut dyn Slots, first: usize) -> usize {
        let mut n = 0;
        let mut needed = 0;
        while first + n < slots.count() {
            match self.take_into(slots.buf(first + n), Some(Duration::ZERO), &mut needed) {
                Ok(len) => slots.set_len(first + n, len),
                Err(_) => break,
            }
            n += 1;
        }
        n
    }
}

/// The batch receive: the first datagram waits up to `timeout`, the rest are what is already
/// queued. Returns how many buffers were filled (≥ 1). Errors are those of the first take; on
/// WTD_ERR_BUFFER_TOO_SMALL the size needed is recorded in slot 0.
pub fn receive_into(
    src: &(impl BatchSource + ?Sized),
    slots: &mut dyn Slots,
    timeout: Option<Duration>,
) -> Result<usize> {
    if slots.count() == 0 {
        return Err(Error::invalid("count must be > 0"));
    }
    src.take_batch(slots, timeout)
}

impl BatchSource for Session {
    fn take_into(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        needed: &mut usize,
    ) -> Result<usize> {
        self.recv_datagram_into(buf, timeout, needed)
    }

    /// One lock for the whole rest of the batch.
    fn take_more(&self, slots: &mut dyn Slots, first: usize) -> usize {
        let room = slots.count().saturating_sub(first);
        self.recv_batch_with(room, |i, d| {
            let dst = slots.buf(first + i);
            if d.len() > dst.len() {
                return false;
            }
            dst[..d.len()].copy_from_slice(d);
            slots.set_len(first + i, d.len());
            true
        })
    }
}

impl BatchSource for DatagramTransport {
    fn take_into(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        needed: &mut usize,
    ) -> Result<usize> {
        let seen = Cell::new(0);
        let r = self.receive_where(timeout, fits(buf.len(), &seen));
        match r {
            Ok(r) => {
                buf[..r.data.len()].copy_from_slice(&r.data);
                Ok(r.data.len())
            }
            Err(e) => {
                *needed = seen.get();
                Err(e)
            }
        }
    }

    /// One wait, one lock and one counter update for the whole batch (not one receive per
    /// datagram): copies straight from the queue into the caller's buffers.
    fn take_batch(&self, slots: &mut dyn Slots, timeout: Option<Duration>) -> Result<usize> {
        let seen = Cell::new(0);
        let r = self.take_incoming(
            slots.count(),
            timeout,
            |i, d| {
                let dst = slots.buf(i);
                fits(dst.len(), &seen)(d)?;
                dst[..d.len()].copy_from_slice(d);
                slots.set_len(i, d.len());
                Ok(())
            },
            |_, _| {},
        );
        match r {
            Ok((n, _)) => Ok(n),
            Err(e) => {
                if e.code == wtd_result::WTD_ERR_BUFFER_TOO_SMALL {
                    slots.set_len(0, seen.get());
                }
                Err(e)
            }
        }
    }
}

/// The acceptance test of a receive into `cap` bytes: a larger datagram (or message) is refused
/// with WTD_ERR_BUFFER_TOO_SMALL and its size recorded in `needed`, so it stays queued and the
/// caller can report the size.
pub fn fits(cap: usize, needed: &Cell<usize>) -> impl Fn(&[u8]) -> Result<()> + '_ {
    move |d| {
        if d.len() > cap {
            needed.set(d.len());
            return Err(Error::new(
                wtd_result::WTD_ERR_BUFFER_TOO_SMALL,
                format!("next datagram has {} bytes, buffer holds {cap}", d.len()),
            ));
        }
        Ok(())
    }
}

/// First 8 lowercase hex characters of the SHA-256 of `data` (the checksum pywebtransport's
/// DatagramMessage reports).
pub fn checksum8(data: &[u8]) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 8];
    for (i, b) in digest.as_ref()[..4].iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// A `Vec` of byte buffers as [`Slots`] (for Rust callers and tests).
impl Slots for Vec<(Vec<u8>, usize)> {
    fn count(&self) -> usize {
        self.len()
    }
    fn buf(&mut self, i: usize) -> &mut [u8] {
        &mut self[i].0
    }
    fn set_len(&mut self, i: usize, len: usize) {
        self[i].1 = len;
    }
}

/// A queue of datagrams as a [`BatchSource`] (tests).
#[cfg(test)]
struct Fake(std::sync::Mutex<std::collections::VecDeque<bytes::Bytes>>);

#[cfg(test)]
impl BatchSource for Fake {
    fn take_into(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        needed: &mut usize,
    ) -> Result<usize> {
        let mut q = self.0.lock().unwrap();
        let Some(front) = q.front() else {
            return Err(if timeout == Some(Duration::ZERO) {
                Error::would_block("empty")
            } else {
                Error::timeout("empty")
            });
        };
        if front.len() > buf.len() {
            *needed = front.len();
            return Err(Error::new(wtd_result::WTD_ERR_BUFFER_TOO_SMALL, "small"));
        }
        let d = q.pop_front().unwrap();
        buf[..d.len()].copy_from_slice(&d);
        Ok(d.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(items: &[&'static [u8]]) -> Fake {
        Fake(std::sync::Mutex::new(
            items.iter().map(|d| bytes::Bytes::from_static(d)).collect(),
        ))
    }

    #[test]
    fn first_waits_rest_drain_and_too_small_reports_the_size() {
        let src = fake(&[b"aa", b"bbbb", b"c"]);
        let mut slots = vec![(vec![0u8; 4], 0), (vec![0u8; 2], 0), (vec![0u8; 4], 0)];
        // The second datagram (4 bytes) does not fit slot 1: the batch stops there.
        assert_eq!(
            receive_into(&src, &mut slots, Some(Duration::ZERO)).unwrap(),
            1
        );
        assert_eq!(slots[0].1, 2);
        let mut one = vec![(vec![0u8; 3], 0)];
        let e = receive_into(&src, &mut one, Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.code, wtd_result::WTD_ERR_BUFFER_TOO_SMALL);
        assert_eq!(one[0].1, 4, "needed size in slot 0");
        let mut slots = vec![(vec![0u8; 4], 0), (vec![0u8; 4], 0), (vec![0u8; 4], 0)];
        assert_eq!(
            receive_into(&src, &mut slots, Some(Duration::ZERO)).unwrap(),
            2
        );
        assert_eq!((&slots[0].0[..4], slots[1].1), (&b"bbbb"[..], 1));
        let e = receive_into(&src, &mut slots, Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.code, wtd_result::WTD_ERR_WOULD_BLOCK);
        let mut none: Vec<(Vec<u8>, usize)> = Vec::new();
        assert!(receive_into(&src, &mut none, None).is_err());
    }

    #[test]
    fn checksum_is_the_sha256_prefix() {
        // SHA-256("abc") = ba7816bf...
        assert_eq!(&checksum8(b"abc"), b"ba7816bf");
    }
}

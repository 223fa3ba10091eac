//! Readiness you can wait on: a file descriptor (an eventfd on Linux, a pipe elsewhere) that is
//! readable exactly while a receive queue holds something or its owner has closed, so a game
//! loop can `poll`/`epoll` wtd handles together with its own sockets.
//!
//! Level semantics: the owner calls [`Readiness::update`] under its queue lock whenever the
//! queue may have changed between empty and non-empty, with the new state. The descriptor is
//! created on first request ([`Readiness::fd`]); until then updates cost one atomic load.
//! Reading the descriptor is not how you consume readiness: receive until the call says the
//! queue is empty, and wtd clears it.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

use crate::error::{wtd_result, Error, Result};

/// A lazily created readiness descriptor.
#[derive(Debug)]
pub(crate) struct Readiness {
    /// Read end (-1 until created).
    read_fd: AtomicI32,
    /// Write end (the same descriptor for an eventfd).
    write_fd: AtomicI32,
    /// Whether the descriptor is signalled now (avoids a syscall when nothing changes).
    signalled: AtomicBool,
    /// The state to apply when the descriptor gets created (tracked before that).
    ready: AtomicBool,
    create: Mutex<()>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            read_fd: AtomicI32::new(-1),
            write_fd: AtomicI32::new(-1),
            signalled: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            create: Mutex::new(()),
        }
    }
}

impl Readiness {
    /// Records whether the owner has something to take (or is closed). Call it under the lock
    /// that guards that state, so updates are applied in order.
    pub(crate) fn update(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        if self.read_fd.load(Ordering::Acquire) < 0 {
            return;
        }
        if self.signalled.load(Ordering::Relaxed) != ready {
            self.apply(ready);
        }
    }

    /// The descriptor, created on first call with the current state applied. Owned by wtd:
    /// valid until the handle is freed; never close it.
    pub(crate) fn fd(&self) -> Result<i32> {
        let fd = self.read_fd.load(Ordering::Acquire);
        if fd >= 0 {
            return Ok(fd);
        }
        let _g = self.create.lock().unwrap_or_else(|p| p.into_inner());
        let fd = self.read_fd.load(Ordering::Acquire);
        if fd >= 0 {
            return Ok(fd);
        }
        let (r, w) = make_fds()?;
        self.write_fd.store(w, Ordering::Release);
        self.read_fd.store(r, Ordering::Release);
        // An update racing with creation may have skipped the syscall: apply the latest state.
        self.apply(self.ready.load(Ordering::Acquire));
        Ok(r)
    }

    fn apply(&self, ready: bool) {
        let (r, w) = (
            self.read_fd.load(Ordering::Acquire),
            self.write_fd.load(Ordering::Acquire),
        );
        if ready {
            if !self.signalled.swap(true, Ordering::AcqRel) {
                signal(w);
            }
        } else if self.signalled.swap(false, Ordering::AcqRel) {
            drain(r);
        }
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        let (r, w) = (*self.read_fd.get_mut(), *self.write_fd.get_mut());
        if r >= 0 {
            // SAFETY: descriptors this struct created and nobody else closes.
            unsafe { libc::close(r) };
        }
        if w >= 0 && w != r {
            // SAFETY: as above.
            unsafe { libc::close(w) };
        }
    }
}

#[cfg(target_os = "linux")]
fn make_fds() -> Result<(i32, i32)> {
    // SAFETY: plain syscall with constant flags.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(os_error("eventfd"));
    }
    Ok((fd, fd))
}

#[cfg(not(target_os = "linux"))]
fn make_fds() -> Result<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for the two descriptors pipe writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os_error("pipe"));
    }
    for fd in fds {
        // SAFETY: descriptors just created.
        unsafe {
            libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    Ok((fds[0], fds[1]))
}

fn os_error(what: &str) -> Error {
    Error::new(
        wtd_result::WTD_ERR_INTERNAL,
        format!(
            "cannot create the readiness descriptor ({what}): {}",
            std::io::Error::last_os_error()
        ),
    )
}

fn signal(w: i32) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a local to a descriptor we own (eventfd counter or pipe).
    let _ = unsafe { libc::write(w, &one as *const u64 as *const libc::c_void, 8) };
}

fn drain(r: i32) {
    let mut buf = [0u8; 64];
    // SAFETY: reads into a local buffer from a non-blocking descriptor we own.
    while unsafe { libc::read(r, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) } > 0 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn level_follows_updates_before_and_after_creation() {
        let r = Readiness::default();
        r.update(true); // before the descriptor exists
        let fd = r.fd().unwrap();
        assert!(readable(fd), "state set before creation is applied");
        r.update(true);
        assert!(readable(fd));
        r.update(false);
        assert!(!readable(fd));
        r.update(false);
        assert!(!readable(fd));
        r.update(true);
        assert!(readable(fd));
        assert_eq!(r.fd().unwrap(), fd, "one descriptor per owner");
    }
}

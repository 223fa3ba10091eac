//! [`Deadline`]: how long a blocking call (receive, accept) may still wait.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The end of a blocking call's wait, from its `timeout` (`None`: no limit, `Some(ZERO)`: a
/// poll). A poll never waits and reads no clock: it is the game loop's call, made for every
/// session every frame, and a clock read costs as much as the rest of such a call in some VMs
/// (the benchmark's: ~27 ns each; an empty `wtd_session_receive` went from 122 to 65 ns).
pub(crate) enum Deadline {
    Poll,
    Never,
    At(Instant),
}

impl Deadline {
    /// Starts the wait; refuses (`WTD_ERR_INVALID_STATE`) a call that would block where blocking
    /// is not allowed (`super::check_may_block`) — a poll is allowed anywhere.
    pub(crate) fn start(timeout: Option<Duration>) -> Result<Self> {
        Ok(match timeout {
            Some(Duration::ZERO) => Deadline::Poll,
            None => {
                super::check_may_block()?;
                Deadline::Never
            }
            Some(t) => {
                super::check_may_block()?;
                Deadline::At(Instant::now() + t)
            }
        })
    }

    /// Whether this is a poll.
    pub(crate) fn is_poll(&self) -> bool {
        matches!(self, Deadline::Poll)
    }

    /// How long to wait now (`None`: no limit), or the error once the time is up:
    /// `WTD_ERR_WOULD_BLOCK` with `empty` for a poll, `WTD_ERR_TIMEOUT` with `late` otherwise.
    pub(crate) fn remaining(
        &self,
        empty: &'static str,
        late: &'static str,
    ) -> Result<Option<Duration>> {
        match self {
            Deadline::Poll => Err(Error::would_block(empty)),
            Deadline::Never => Ok(None),
            Deadline::At(d) => {
                let now = Instant::now();
                if now >= *d {
                    return Err(Error::timeout(late));
                }
                Ok(Some(*d - now))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::wtd_result;

    #[test]
    fn poll_refuses_at_once_and_a_deadline_runs_out() {
        let d = Deadline::start(Some(Duration::ZERO)).unwrap();
        assert!(d.is_poll());
        let e = d.remaining("empty", "late").unwrap_err();
        assert_eq!(
            (e.code, &*e.message),
            (wtd_result::WTD_ERR_WOULD_BLOCK, "empty")
        );
        assert_eq!(
            Deadline::start(None).unwrap().remaining("", "").unwrap(),
            None
        );
        let d = Deadline::start(Some(Duration::from_millis(20))).unwrap();
        let left = d.remaining("", "").unwrap().unwrap();
        assert!(left > Duration::ZERO && left <= Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(25));
        let e = d.remaining("empty", "late").unwrap_err();
        assert_eq!((e.code, &*e.message), (wtd_result::WTD_ERR_TIMEOUT, "late"));
    }
}

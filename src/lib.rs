//! wtd: WebTransport datagrams.

// Foundation modules first: `logging` defines the crate-wide log_* macros (textual scope).
#[macro_use]
pub mod logging;
pub mod error;
pub mod ffi;
pub mod runtime;

pub use error::{wtd_result, Error, Result};
pub use logging::wtd_log_level;

pub mod endpoint;
mod gate;
pub mod h3;
mod lock;
mod pace;
mod ready;
pub mod session;

pub use endpoint::client::{connect, ClientConfig};
pub use endpoint::server::{Server, ServerConfig};
pub use endpoint::tls::Verification;
pub use h3::flusher::{send_coalescing, set_send_coalescing};
pub use session::Session;
pub mod datagram;

//! WebTransport over HTTP/3 on quinn: just enough HTTP/3 for WebTransport sessions and their
//! datagrams, speaking draft-02, -07, -13 and -15 from one client and one server.

pub mod capsule;
pub mod connection;
pub mod draft;
pub mod errors;
pub(crate) mod flusher;
pub mod frame;
pub mod huffman;
pub(crate) mod outbox;
pub mod qpack;
pub mod request;
pub mod session_core;
pub mod settings;
pub mod stream_reader;
pub mod varint;

pub use draft::wtd_draft;

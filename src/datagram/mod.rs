//! The datagram layer: per-session transport (queues, TTL, priorities, drop policies, stats),
//! and the pure logic it is built from, testable with an in-memory link and a manual clock.

pub mod batch;
pub mod broadcaster;
pub mod clock;
pub mod json;
pub mod link;
pub mod monitor;
pub mod queue;
pub mod reliability;
pub mod report;
pub mod stats;
pub mod structured;
pub mod transport;

pub use queue::wtd_drop_policy;
pub use transport::{DatagramTransport, TransportConfig};

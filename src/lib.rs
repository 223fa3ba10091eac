//! wtd: WebTransport datagrams.

//! `https://host[:port]/path?query` parsing for WebTransport URLs.

use crate::error::{Error, Result};

/// The parts of a WebTransport URL wtd needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WtUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (443 when absent).
    pub port: u16,
    /// Path with query, always starting with `/`.
    pub path: String,
    /// `host[:port]` as written in the URL (the `:authority`).
    pub authority: String,
}

/// Parses an `https://` URL; anything else is WTD_ERR_INVALID_ARGUMENT.
pub fn parse(url: &str) -> Result<WtUrl> {
    let bad = |why: &str| Error::invalid(format!("bad URL {url:?}: {why}"));
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("must start with https://"))?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("missing host (or userinfo, which is not allowed)"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| bad("unclosed IPv6 bracket"))?;
        (v6[..end].to_owned(), &v6[end + 1..])
    } else {
        match authority.rfind(':') {
            Some(i) => (authority[..i].to_owned(), &authority[i..]),
            None => (authority.to_owned(), ""),
        }
    };
    let port = match port {
        "" => 443,
        p => p
            .strip_prefix(':')
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("invalid port"))?,
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("invalid host"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("path contains whitespace or control characters"));
    }
    Ok(WtUrl {
        host,
        port,
        path,
        authority: authority.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls() {
        let u = parse("https://127.0.0.1:4433/echo?x=1").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.path.as_str(),
                u.authority.as_str()
            ),
            ("127.0.0.1", 4433, "/echo?x=1", "127.0.0.1:4433")
        );
        let u = parse("https://example.com").unwrap();
        assert_eq!((u.port, u.path.as_str()), (443, "/"));
        let u = parse("https://[::1]:9/a#frag").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 9, "/a"));
        assert_eq!(parse("https://h?q").unwrap().path, "/?q");
    }

    #[test]
    fn bad_urls() {
        for url in [
            "http://x/",
            "https://",
            "https://:443/",
            "https://h:0/",
            "https://h:99999/",
            "https://u@h/",
            "https://[::1/",
            "https://h/a b",
            "wss://h/",
        ] {
            assert!(parse(url).is_err(), "{url}");
        }
    }
}

//! Which WebTransport draft a session speaks, and how each side picks it.

use super::settings::{self, Settings};

/// The WebTransport-over-HTTP/3 draft negotiated for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(non_camel_case_types)]
pub enum wtd_draft {
    /// Not known (no session yet).
    WTD_DRAFT_UNKNOWN = 0,
    /// draft-ietf-webtrans-http3-02: Chromium's default, aioquic, web-transport-quinn, wtransport.
    WTD_DRAFT_02 = 2,
    /// draft-07: SETTINGS_WEBTRANSPORT_MAX_SESSIONS (Chromium behind a flag, Rust crates).
    WTD_DRAFT_07 = 7,
    /// draft-13: SETTINGS_WT_MAX_SESSIONS (pywebtransport 0.6–0.8).
    WTD_DRAFT_13 = 13,
    /// draft-15: SETTINGS_WT_ENABLED, `:protocol webtransport-h3` (pywebtransport ≥ 0.15).
    WTD_DRAFT_15 = 15,
}

crate::error::c_enum!(wtd_draft {
    WTD_DRAFT_UNKNOWN => c"unknown",
    WTD_DRAFT_02 => c"draft-02",
    WTD_DRAFT_07 => c"draft-07",
    WTD_DRAFT_13 => c"draft-13",
    WTD_DRAFT_15 => c"draft-15",
});

/// `:protocol` of draft-02 through draft-13.
pub const PROTOCOL_WEBTRANSPORT: &str = "webtransport";
/// `:protocol` of draft-15.
pub const PROTOCOL_WEBTRANSPORT_H3: &str = "webtransport-h3";

impl wtd_draft {
    /// "draft-02", "draft-07", "draft-13", "draft-15" or "unknown".
    pub fn as_str(self) -> &'static str {
        self.name()
    }

    /// The `:protocol` value this draft uses in the CONNECT request.
    pub fn protocol(self) -> &'static str {
        match self {
            wtd_draft::WTD_DRAFT_15 => PROTOCOL_WEBTRANSPORT_H3,
            _ => PROTOCOL_WEBTRANSPORT,
        }
    }

    /// Whether the CLOSE_WEBTRANSPORT_SESSION capsule goes raw on the CONNECT stream instead of
    /// inside a DATA frame: only pywebtransport 0.6 (draft-13) wants that (WIRE-FACTS §4.10).
    pub fn raw_capsules(self) -> bool {
        self == wtd_draft::WTD_DRAFT_13
    }
}

/// Server side: the draft of a CONNECT request, from the client's SETTINGS and `:protocol`.
/// `None` when `:protocol` is not a WebTransport one.
pub fn server_pick(client: &Settings, protocol: &str) -> Option<wtd_draft> {
    match protocol {
        PROTOCOL_WEBTRANSPORT_H3 => Some(wtd_draft::WTD_DRAFT_15),
        PROTOCOL_WEBTRANSPORT => Some(if client.is_set(settings::WT_MAX_SESSIONS_D13) {
            wtd_draft::WTD_DRAFT_13
        } else if client.is_set(settings::WEBTRANSPORT_MAX_SESSIONS_D07)
            && !client.is_set(settings::ENABLE_WEBTRANSPORT)
        {
            wtd_draft::WTD_DRAFT_07
        } else {
            // Chromium (0x2b603742), wtr (no WT setting at all), wtq (both 0x2b603742 and
            // 0xc671706a): all speak draft-02 framing on the wire.
            wtd_draft::WTD_DRAFT_02
        }),
        _ => None,
    }
}

/// Client side: the draft to speak to a server, from its SETTINGS. `None` when the server
/// announced no WebTransport support at all.
pub fn client_pick(server: &Settings) -> Option<wtd_draft> {
    if server.is_set(settings::WT_ENABLED) {
        Some(wtd_draft::WTD_DRAFT_15)
    } else if server.is_set(settings::WT_MAX_SESSIONS_D13) {
        Some(wtd_draft::WTD_DRAFT_13)
    } else if server.is_set(settings::ENABLE_WEBTRANSPORT) {
        Some(wtd_draft::WTD_DRAFT_02)
    } else if server.is_set(settings::WEBTRANSPORT_MAX_SESSIONS_D07) {
        Some(wtd_draft::WTD_DRAFT_07)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settings::*;

    #[test]
    fn server_side_per_peer() {
        let chromium = Settings::from_pairs(&[(H3_DATAGRAM, 1), (ENABLE_WEBTRANSPORT, 1)]);
        let chromium_d07 = Settings::from_pairs(&[
            (ENABLE_WEBTRANSPORT, 1),
            (WEBTRANSPORT_MAX_SESSIONS_D07, 16),
        ]);
        let pywt021 = Settings::from_pairs(&[(WT_ENABLED, 1)]);
        let pywt061 = Settings::from_pairs(&[(WT_MAX_SESSIONS_D13, 1)]);
        let d07_only = Settings::from_pairs(&[(WEBTRANSPORT_MAX_SESSIONS_D07, 1)]);
        let wtr = Settings::default();
        assert_eq!(
            server_pick(&chromium, "webtransport"),
            Some(wtd_draft::WTD_DRAFT_02)
        );
        assert_eq!(
            server_pick(&chromium_d07, "webtransport"),
            Some(wtd_draft::WTD_DRAFT_02)
        );
        assert_eq!(
            server_pick(&pywt021, "webtransport-h3"),
            Some(wtd_draft::WTD_DRAFT_15)
        );
        assert_eq!(
            server_pick(&pywt061, "webtransport"),
            Some(wtd_draft::WTD_DRAFT_13)
        );
        assert_eq!(
            server_pick(&d07_only, "webtransport"),
            Some(wtd_draft::WTD_DRAFT_07)
        );
        assert_eq!(
            server_pick(&wtr, "webtransport"),
            Some(wtd_draft::WTD_DRAFT_02)
        );
        assert_eq!(server_pick(&chromium, "websocket"), None);
    }

    #[test]
    fn client_side_per_server() {
        let pywt021 = Settings::from_pairs(&[(WT_ENABLED, 1), (H3_DATAGRAM, 1)]);
        let pywt061 = Settings::from_pairs(&[(WT_MAX_SESSIONS_D13, 10000)]);
        let aioquic = Settings::from_pairs(&[(ENABLE_WEBTRANSPORT, 1)]);
        let aioquic_d15 = Settings::from_pairs(&[(ENABLE_WEBTRANSPORT, 1), (WT_ENABLED, 1)]);
        let d07 = Settings::from_pairs(&[(WEBTRANSPORT_MAX_SESSIONS_D07, 1)]);
        assert_eq!(
            client_pick(&pywt021).map(wtd_draft::protocol),
            Some("webtransport-h3")
        );
        assert_eq!(client_pick(&pywt061), Some(wtd_draft::WTD_DRAFT_13));
        assert_eq!(client_pick(&aioquic), Some(wtd_draft::WTD_DRAFT_02));
        assert_eq!(client_pick(&aioquic_d15), Some(wtd_draft::WTD_DRAFT_15));
        assert_eq!(client_pick(&d07), Some(wtd_draft::WTD_DRAFT_07));
        assert_eq!(client_pick(&Settings::default()), None);
        assert!(wtd_draft::WTD_DRAFT_13.raw_capsules());
        assert!(!wtd_draft::WTD_DRAFT_15.raw_capsules());
    }
}

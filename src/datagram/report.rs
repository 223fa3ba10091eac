//! Reports about a transport: `debug_state` (the seed's keys, as JSON) and `diagnose_issues`
//! (the seed's checks and thresholds, as codes with messages).

use serde_json::{json, Value};

use super::transport::DatagramTransport;

/// A problem `diagnose_issues` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(non_camel_case_types)]
pub enum wtd_issue {
    /// Send success rate below 0.9.
    WTD_ISSUE_LOW_SEND_SUCCESS_RATE = 1,
    /// (send + receive drops) / (sent + received) above 0.1.
    WTD_ISSUE_HIGH_DROP_RATE = 2,
    /// Outgoing queue above 90 % of its high water mark.
    WTD_ISSUE_OUTGOING_QUEUE_NEARLY_FULL = 3,
    /// Incoming queue above 90 % of its high water mark.
    WTD_ISSUE_INCOMING_QUEUE_NEARLY_FULL = 4,
    /// Average send (queueing) time above 100 ms.
    WTD_ISSUE_HIGH_SEND_LATENCY = 5,
    /// The transport is closed.
    WTD_ISSUE_CLOSED = 6,
    /// The session is not open.
    WTD_ISSUE_SESSION_NOT_READY = 7,
}

crate::error::c_enum!(wtd_issue {
    WTD_ISSUE_LOW_SEND_SUCCESS_RATE => c"low_send_success_rate",
    WTD_ISSUE_HIGH_DROP_RATE => c"high_drop_rate",
    WTD_ISSUE_OUTGOING_QUEUE_NEARLY_FULL => c"outgoing_queue_nearly_full",
    WTD_ISSUE_INCOMING_QUEUE_NEARLY_FULL => c"incoming_queue_nearly_full",
    WTD_ISSUE_HIGH_SEND_LATENCY => c"high_send_latency",
    WTD_ISSUE_CLOSED => c"closed",
    WTD_ISSUE_SESSION_NOT_READY => c"session_not_ready",
});

/// Runs pywebtransport's checks; each issue with a message.
pub fn diagnose_issues(t: &DatagramTransport) -> Vec<(wtd_issue, String)> {
    let s = t.stats();
    let mut issues = Vec::new();
    if s.send_success_rate() < 0.9 {
        issues.push((
            wtd_issue::WTD_ISSUE_LOW_SEND_SUCCESS_RATE,
            format!(
                "Low send success rate: {:.2}%",
                s.send_success_rate() * 100.0
            ),
        ));
    }
    if s.drop_rate() > 0.1 {
        issues.push((
            wtd_issue::WTD_ISSUE_HIGH_DROP_RATE,
            format!(
                "High drop rate: {}/{}",
                s.send_drops + s.receive_drops,
                s.datagrams_sent + s.datagrams_received
            ),
        ));
    }
    let [(out_len, out_max, _), (in_len, in_max, _)] = t.queue_stats();
    let usage = |len: usize, max: usize| (max > 0).then(|| len as f64 / max as f64);
    if let Some(u) = usage(out_len, out_max).filter(|u| *u > 0.9) {
        issues.push((
            wtd_issue::WTD_ISSUE_OUTGOING_QUEUE_NEARLY_FULL,
            format!("Outgoing queue nearly full: {:.1}%", u * 100.0),
        ));
    }
    if let Some(u) = usage(in_len, in_max).filter(|u| *u > 0.9) {
        issues.push((
            wtd_issue::WTD_ISSUE_INCOMING_QUEUE_NEARLY_FULL,
            format!("Incoming queue nearly full: {:.1}%", u * 100.0),
        ));
    }
    if s.avg_send_time() > 0.1 {
        issues.push((
            wtd_issue::WTD_ISSUE_HIGH_SEND_LATENCY,
            format!("High send latency: {:.1}ms", s.avg_send_time() * 1000.0),
        ));
    }
    if t.is_closed() {
        issues.push((
            wtd_issue::WTD_ISSUE_CLOSED,
            "Datagram transport is closed".to_owned(),
        ));
    }
    if !t.is_session_ready() {
        issues.push((
            wtd_issue::WTD_ISSUE_SESSION_NOT_READY,
            "Session not available or not ready".to_owned(),
        ));
    }
    issues
}

/// `diagnose_issues` as a JSON array of `{"code": n, "message": ".."}`.
pub fn diagnose_json(t: &DatagramTransport) -> String {
    let v: Vec<Value> = diagnose_issues(t)
        .into_iter()
        .map(|(c, m)| json!({"code": c as u32, "message": m}))
        .collect();
    Value::Array(v).to_string()
}

fn queue_json(q: &(usize, usize, Vec<(i32, usize)>)) -> Value {
    let priorities: serde_json::Map<String, Value> =
        q.2.iter().map(|(p, n)| (p.to_string(), json!(n))).collect();
    json!({"size": q.0, "max_size": q.1, "priorities": priorities})
}

fn opt_secs(d: Option<std::time::Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

/// Snapshot with pywebtransport's keys: transport, statistics, queues, configuration, sequences.
pub fn debug_state(t: &DatagramTransport) -> String {
    let s = t.stats();
    let c = t.config();
    let [out, inc] = t.queue_stats();
    json!({
        "transport": {
            "session_id": t.session_id(),
            "is_closed": t.is_closed(),
            "is_readable": t.is_readable(),
            "is_writable": t.is_writable(),
            "max_datagram_size": t.max_datagram_size(),
        },
        "statistics": {
            "session_id": t.session_id(), "created_at": s.created_at,
            "min_datagram_size": s.min_datagram_size, "max_datagram_size": s.max_datagram_size,
            "datagrams_sent": s.datagrams_sent, "bytes_sent": s.bytes_sent,
            "send_failures": s.send_failures, "send_drops": s.send_drops,
            "datagrams_received": s.datagrams_received, "bytes_received": s.bytes_received,
            "receive_drops": s.receive_drops, "receive_errors": s.receive_errors,
            "datagrams_read": s.datagrams_read,
            "dropped_full": s.dropped_full, "dropped_expired": s.dropped_expired,
            "dropped_too_old": s.dropped_too_old, "dropped_too_large": s.dropped_too_large,
            "rejected_full": s.rejected_full, "cleared_outgoing": s.cleared_outgoing,
            "evicted_incoming": s.evicted_incoming, "expired_incoming": s.expired_incoming,
            "cleared_incoming": s.cleared_incoming, "heartbeats_filtered": s.heartbeats_filtered,
            "avg_send_time": s.avg_send_time(), "max_send_time": s.max_send_time,
            "avg_receive_time": s.avg_receive_time(), "max_receive_time": s.max_receive_time,
            "avg_datagram_size": s.avg_datagram_size(),
            "send_success_rate": s.send_success_rate(), "receive_success_rate": s.receive_success_rate(),
        },
        "queues": {"outgoing": queue_json(&out), "incoming": queue_json(&inc)},
        "configuration": {
            "outgoing_high_water_mark": c.outgoing_high_water_mark,
            "incoming_high_water_mark": c.incoming_high_water_mark,
            "drop_policy": c.drop_policy as u32,
            "sender_get_timeout": c.sender_timeout.as_secs_f64(),
            "incoming_max_age": opt_secs(c.incoming_max_age),
            "outgoing_max_age": opt_secs(c.outgoing_max_age),
            "filter_heartbeats": c.filter_heartbeats,
        },
        "sequences": {"send_sequence": t.send_sequence(), "receive_sequence": t.receive_sequence()},
    })
    .to_string()
}

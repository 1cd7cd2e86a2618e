//! The live status page (`GET /`) and the JSON it polls (`GET /v1/status`).
//!
//! The page is rendered on the server with the current state, so it is useful without
//! JavaScript, and a small script (`/status.js`, no build step) refreshes it every second
//! from `/v1/status`. Script and style are same-origin files, never inline, so the
//! page's Content-Security-Policy can forbid inline script. Every name shown is escaped: on the server with [`escape_html`], in the
//! browser by only ever assigning `textContent`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};

use crate::agent::state::AgentState;
use crate::api::replies::{
    CounterRow, GossipTotals, LagRow, MemberReply, SelfReply, StatusReply, StrictStatus,
};

/// How many counters (the first by name) the page shows.
const COUNTERS_SHOWN: usize = 50;

fn snapshot(state: &AgentState) -> StatusReply {
    let metrics = state.mesh.metrics();
    // Only the rows shown are copied; the count comes from the metrics snapshot.
    let (shown, _) = state.mesh.counters_page("", COUNTERS_SHOWN);
    let counter_count = metrics.counters;
    StatusReply {
        me: SelfReply::of(state),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        members: MemberReply::all(state),
        counter_count,
        counters: shown.into_iter().map(CounterRow::from).collect(),
        peer_lag: metrics
            .peer_lag
            .iter()
            .map(|lag| LagRow {
                peer: lag.addr.to_string(),
                versions_behind: lag.versions_behind,
            })
            .collect(),
        add_rate: state.stats.rate_history(),
        adds_total: state.stats.adds.load(Ordering::Relaxed),
        reads_total: state.stats.reads.load(Ordering::Relaxed),
        gossip: GossipTotals {
            sent_bytes: metrics.sent.iter().map(|(_, _, bytes)| bytes).sum(),
            received_bytes: metrics.received.iter().map(|(_, _, bytes)| bytes).sum(),
        },
        strict: StrictStatus {
            configured: state.strict.configured(),
            connected: state.strict.connected(),
            state: state.strict.describe(),
        },
    }
}

pub(crate) async fn status(State(state): State<Arc<AgentState>>) -> Json<StatusReply> {
    Json(snapshot(&state))
}

pub(crate) async fn page(State(state): State<Arc<AgentState>>) -> Html<String> {
    Html(render(&snapshot(&state)))
}

/// `GET /status.js`: static, no data, so it needs no token (the page loads it before
/// its script can send one).
pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

/// `GET /status.css`: static, like the script.
pub(crate) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn render(status: &StatusReply) -> String {
    let mut members = String::new();
    let _ = write!(
        members,
        "<tr class=\"self\"><td>{} <span class=\"muted\">(this node)</span></td><td>{}</td>\
         <td>{}</td><td><span class=\"state alive\">alive</span></td></tr>",
        escape_html(&status.me.addr),
        escape_html(&status.me.actor),
        status.me.incarnation
    );
    for m in &status.members {
        let _ = write!(
            members,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"state {}\">{}</span></td></tr>",
            escape_html(&m.addr),
            escape_html(&m.actor),
            m.incarnation,
            m.state,
            m.state
        );
    }
    let mut counters = String::new();
    for c in &status.counters {
        let _ = write!(
            counters,
            "<tr><td class=\"name\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape_html(&c.name),
            c.value,
            c.contributors
        );
    }
    let mut lag = String::new();
    for l in &status.peer_lag {
        let _ = write!(
            lag,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            escape_html(&l.peer),
            l.versions_behind
        );
    }
    let alive = 1 + status.members.iter().filter(|m| m.state == "alive").count();
    let alive = alive.to_string();
    let counter_count = status.counter_count.to_string();
    let adds_total = status.adds_total.to_string();
    let me = escape_html(&status.me.addr);
    let strict = escape_html(&status.strict.state);
    fill_template(
        PAGE,
        &[
            ("SELF", &me),
            ("VERSION", status.version),
            ("STRICT", &strict),
            ("ALIVE", &alive),
            ("COUNTER_COUNT", &counter_count),
            ("ADDS_TOTAL", &adds_total),
            ("MEMBERS", &members),
            ("COUNTERS", &counters),
            ("LAG", &lag),
        ],
    )
}

/// Replaces each `{{KEY}}` in one pass, so text substituted for one key (a counter
/// named `{{LAG}}`, say) is never itself treated as a placeholder.
fn fill_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| {
            values
                .iter()
                .find(|(key, _)| *key == &after[..end])
                .map(|(_, v)| (end, v))
        }) {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The page template: `{{KEY}}` placeholders filled by [`render`].
const PAGE: &str = include_str!("status_page.html");
/// The page's script and style, separate files because the page's Content-Security-Policy
/// allows no inline script or style (see `guard::security_headers`).
const SCRIPT: &str = include_str!("status_page.js");
const STYLE: &str = include_str!("status_page.css");

#[cfg(test)]
mod tests {
    use super::{escape_html, fill_template};

    #[test]
    fn placeholders_are_filled_once() {
        let filled = fill_template("{{A}}-{{B}}-{{C", &[("A", "{{B}}"), ("B", "b")]);
        assert_eq!(filled, "{{B}}-b-{{C");
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            escape_html("<script>\"a\"&'b'"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;"
        );
    }
}

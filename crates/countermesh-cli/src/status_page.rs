//! The live status page (`GET /`) and the JSON it polls (`GET /v1/status`).
//!
//! The page is rendered on the server with the current state, so it is useful without
//! JavaScript, and a small inline script (no build step) refreshes it every second from
//! `/v1/status`. Every name shown is escaped: on the server with [`escape_html`], in the
//! browser by only ever assigning `textContent`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use serde::Serialize;

use crate::agent_state::AgentState;
use crate::api::{MemberReply, SelfReply, member_replies, self_reply};

/// How many counters (the first by name) the page shows.
const COUNTERS_SHOWN: usize = 50;

#[derive(Serialize)]
pub(crate) struct StatusReply {
    #[serde(rename = "self")]
    me: SelfReply,
    version: &'static str,
    uptime_seconds: u64,
    members: Vec<MemberReply>,
    /// Distinct counters this node knows (the list below is cut at 50).
    counter_count: usize,
    counters: Vec<CounterRow>,
    peer_lag: Vec<LagRow>,
    /// Adds per second over the last minute, oldest first, one sample per second.
    add_rate: Vec<u64>,
    adds_total: u64,
    reads_total: u64,
    gossip: GossipTotals,
    strict: StrictStatus,
}

#[derive(Serialize)]
struct CounterRow {
    name: String,
    value: i128,
    contributors: usize,
}

#[derive(Serialize)]
struct LagRow {
    peer: String,
    versions_behind: u64,
}

#[derive(Serialize)]
struct GossipTotals {
    sent_bytes: u64,
    received_bytes: u64,
}

#[derive(Serialize)]
struct StrictStatus {
    configured: bool,
    connected: bool,
    state: String,
}

fn snapshot(state: &AgentState) -> StatusReply {
    let metrics = state.mesh.metrics();
    // Only the rows shown are copied; the count comes from the metrics snapshot.
    let (shown, _) = state.mesh.counters_page("", COUNTERS_SHOWN);
    let counter_count = metrics.counters;
    StatusReply {
        me: self_reply(state),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        members: member_replies(state),
        counter_count,
        counters: shown
            .into_iter()
            .map(|c| CounterRow {
                name: c.name.to_string(),
                value: c.value,
                contributors: c.contributors,
            })
            .collect(),
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

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>countermesh · {{SELF}}</title>
<style>
  :root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ec; --bg:#f6f7f9; --accent:#2f6fde; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  header { padding: 16px 24px; background: #fff; border-bottom: 1px solid var(--line); display: flex; gap: 16px; align-items: baseline; flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  .muted { color: var(--muted); }
  main { padding: 16px 24px; display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 16px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
  section h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0 0 8px; }
  .cards { display: flex; gap: 24px; flex-wrap: wrap; }
  .card b { display: block; font-size: 22px; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); font-variant-numeric: tabular-nums; }
  td { white-space: nowrap; }
  td.name { white-space: normal; word-break: break-all; }
  @media (min-width: 800px) { section.wide { grid-column: span 2; } }
  .num { text-align: right; }
  .state { padding: 1px 8px; border-radius: 10px; font-size: 12px; }
  .state.alive { background: #ddf5e3; color: #17692f; }
  .state.suspect { background: #fff2cc; color: #8a6100; }
  .state.down { background: #fbdede; color: #9c1c1c; }
  #rate { width: 100%; height: 80px; display: block; }
  #error { color: #9c1c1c; }
</style>
</head>
<body>
<header>
  <h1>countermesh</h1>
  <span>node <b id="self">{{SELF}}</b></span>
  <span class="muted">v{{VERSION}}</span>
  <span class="muted">strict: <span id="strict">{{STRICT}}</span></span>
  <span id="error"></span>
</header>
<main>
  <section>
    <h2>Overview</h2>
    <div class="cards">
      <div class="card"><b id="alive">{{ALIVE}}</b><span class="muted">members alive</span></div>
      <div class="card"><b id="counter-count">{{COUNTER_COUNT}}</b><span class="muted">counters</span></div>
      <div class="card"><b id="adds-total">{{ADDS_TOTAL}}</b><span class="muted">adds (HTTP)</span></div>
      <div class="card"><b id="add-rate">0</b><span class="muted">adds/s</span></div>
    </div>
    <h2 style="margin-top:12px">Add rate, last 60 s</h2>
    <svg id="rate" viewBox="0 0 600 80" preserveAspectRatio="none" role="img" aria-label="adds per second">
      <polyline id="rate-line" fill="none" stroke="#2f6fde" stroke-width="2" points="0,79 600,79"></polyline>
    </svg>
  </section>
  <section class="wide">
    <h2>Members</h2>
    <table id="members" data-source="server">
      <thead><tr><th>address</th><th>actor</th><th>incarnation</th><th>state</th></tr></thead>
      <tbody>{{MEMBERS}}</tbody>
    </table>
  </section>
  <section>
    <h2>Counters <span class="muted">(eventual, first 50 by name)</span></h2>
    <table id="counters">
      <thead><tr><th>name</th><th class="num">value</th><th class="num">contributors</th></tr></thead>
      <tbody>{{COUNTERS}}</tbody>
    </table>
  </section>
  <section>
    <h2>Peer lag <span class="muted">(own versions not yet acknowledged)</span></h2>
    <table id="lag">
      <thead><tr><th>peer</th><th class="num">versions behind</th></tr></thead>
      <tbody>{{LAG}}</tbody>
    </table>
  </section>
</main>
<script>
"use strict";
(function () {
  const token = new URLSearchParams(location.search).get("token");
  const headers = token ? { Authorization: "Bearer " + token } : {};
  // Builds a row from cell texts; textContent never interprets markup in names.
  function row(cells, classes) {
    const tr = document.createElement("tr");
    cells.forEach(function (cell, i) {
      const td = document.createElement("td");
      if (cell instanceof Node) { td.appendChild(cell); } else { td.textContent = String(cell); }
      if (classes && classes[i]) { td.className = classes[i]; }
      tr.appendChild(td);
    });
    return tr;
  }
  function badge(state) {
    const span = document.createElement("span");
    span.className = "state " + state;
    span.textContent = state;
    return span;
  }
  function fill(id, rows) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren.apply(body, rows);
  }
  function text(id, value) { document.getElementById(id).textContent = String(value); }
  function sparkline(samples) {
    const w = 600, h = 80;
    const max = Math.max(1, Math.max.apply(null, samples.concat([0])));
    const n = Math.max(samples.length - 1, 1);
    const points = samples.length < 2 ? ["0," + (h - 1), w + "," + (h - 1)] :
      samples.map(function (v, i) { return (i * w / n).toFixed(1) + "," + (h - 1 - v * (h - 4) / max).toFixed(1); });
    document.getElementById("rate-line").setAttribute("points", points.join(" "));
  }
  function render(s) {
    const self = row([s.self.addr + " (this node)", s.self.actor, s.self.incarnation, badge("alive")]);
    self.className = "self";
    const members = [self].concat(s.members.map(function (m) {
      return row([m.addr, m.actor, m.incarnation, badge(m.state)]);
    }));
    fill("members", members);
    document.getElementById("members").setAttribute("data-source", "live");
    fill("counters", s.counters.map(function (c) {
      return row([c.name, c.value, c.contributors], ["name", "num", "num"]);
    }));
    fill("lag", s.peer_lag.map(function (l) {
      return row([l.peer, l.versions_behind], [null, "num"]);
    }));
    text("self", s.self.addr);
    text("strict", s.strict.state);
    text("alive", 1 + s.members.filter(function (m) { return m.state === "alive"; }).length);
    text("counter-count", s.counter_count);
    text("adds-total", s.adds_total);
    text("add-rate", s.add_rate.length ? s.add_rate[s.add_rate.length - 1] : 0);
    sparkline(s.add_rate);
    text("error", "");
  }
  function poll() {
    fetch("/v1/status", { headers: headers, cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(render)
      .catch(function (e) { text("error", "cannot refresh: " + e.message); })
      .finally(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
</script>
</body>
</html>
"##;

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

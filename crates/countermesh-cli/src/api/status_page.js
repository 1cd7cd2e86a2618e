// The status page's script, served as /status.js (the page allows no inline script):
// refreshes the page from /v1/status every second.
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

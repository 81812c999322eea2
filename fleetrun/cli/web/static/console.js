// Live progress on a request page: one EventSource on /requests/<id>/events. Values go in
// through textContent only (never as HTML), so host names and reasons cannot inject markup.
"use strict";
(function () {
  const box = document.getElementById("progress");
  if (!box || !box.dataset.live) return;
  const seen = new Set(JSON.parse(box.dataset.hosts || "[]"));
  const byStatus = {};
  const $ = (id) => document.getElementById(id);
  const show = () => {
    $("reported").textContent = String(seen.size);
    $("bar").value = seen.size;
    const parts = Object.entries(byStatus).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${s}`);
    if (parts.length) $("by-status").textContent = parts.join(", ");
  };
  for (const el of document.querySelectorAll("#by-status > span")) {
    const [n, s] = el.textContent.trim().split(" ");
    byStatus[s] = Number(n);
  }
  const events = new EventSource(box.dataset.live);
  events.addEventListener("result", (e) => {
    const r = JSON.parse(e.data);
    if (seen.has(r.host)) return;
    seen.add(r.host);
    byStatus[r.status] = (byStatus[r.status] || 0) + 1;
    const li = document.createElement("li");
    li.className = "status-" + r.status;
    li.textContent = `${r.host}: ${r.status} in ${r.duration_ms} ms` + (r.reason ? ` (${r.reason})` : "");
    $("live-results").appendChild(li);
    show();
  });
  events.addEventListener("status", (e) => {
    const st = JSON.parse(e.data);
    $("state").textContent = st.state;
    $("state").className = "state-" + st.state;
    if (st.targets_total !== null) {
      $("total").textContent = String(st.targets_total);
      $("bar").max = st.targets_total;
    }
    if (st.counts) {
      Object.assign(byStatus, st.counts);
      show();
      const counted = Object.values(st.counts).reduce((a, b) => a + b, 0);
      $("reported").textContent = String(Math.max(seen.size, counted));
      $("bar").value = counted;
    }
    if (st.state !== "accepted") {
      events.close();
      $("live").textContent = "finished: reload for the grouped output";
      const cancel = $("cancel");
      if (cancel) cancel.disabled = true;
    }
  });
  // Output chunks (requests with stream_output): `host: line`, complete lines only, the text
  // already escaped by the server; the newest MAX_LINES are kept.
  const MAX_LINES = 2000;
  const partial = {};
  const out = $("live-output");
  const emit = (line) => {
    out.hidden = false;
    out.appendChild(document.createTextNode(line + "\n"));
    while (out.childNodes.length > MAX_LINES) out.removeChild(out.firstChild);
  };
  events.addEventListener("output", (e) => {
    if (!out) return;
    const c = JSON.parse(e.data);
    const key = c.host + "\u0000" + c.stream;
    const mark = c.stream === "stderr" ? " [stderr]" : "";
    const lines = ((partial[key] || "") + c.text).split("\n");
    partial[key] = lines.pop();
    for (const line of lines) emit(`${c.host}${mark}: ${line}`);
    if (c.eos) {
      if (partial[key]) emit(`${c.host}${mark}: ${partial[key]}`);
      delete partial[key];
      if (c.dropped_bytes > 0) emit(`${c.host}${mark}: (${c.dropped_bytes} bytes not streamed: live budget)`);
    }
  });
  events.addEventListener("reload", (e) => {
    events.close();
    $("live").textContent = JSON.parse(e.data).why;
  });
})();

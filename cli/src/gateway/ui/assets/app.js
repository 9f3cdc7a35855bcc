// Pulse dashboard: live updates over server-sent events. Everything here is optional:
// every page works without it. Text from the store is only ever set with textContent.
"use strict";

// Re-renders the live part of the page (#live) from a fresh copy of the page: at most
// once a second, and once more after a burst, so a busy pool cannot flood the server.
let busy = false;
let again = false;
function refreshLive() {
  const live = document.getElementById("live");
  if (!live) return;
  if (busy) { again = true; return; }
  busy = true;
  fetch(live.dataset.refresh + location.search, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
    .then((html) => {
      const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
      const current = document.getElementById("live");
      if (fresh && current) current.replaceWith(fresh);
    })
    .catch(() => {})
    .finally(() => {
      setTimeout(() => {
        busy = false;
        if (again) { again = false; refreshLive(); }
      }, 1000);
    });
}

function describe(e) {
  const parts = [e.event];
  for (const k of ["key", "worker", "from", "to", "node", "group", "reason", "count", "jobs"]) {
    if (e[k] !== undefined) parts.push(k + "=" + e[k]);
  }
  return parts.join(" ");
}

// Pool: moves per 10 s since the page opened, as bars (newest on the right).
const moves = document.getElementById("moves");
const opened = Date.now();
const buckets = [];
function drawMoves() {
  if (!moves) return;
  const shown = buckets.slice(-40);
  const max = Math.max(1, ...shown.map((n) => n || 0));
  const ns = "http://www.w3.org/2000/svg";
  moves.replaceChildren();
  shown.forEach((n, i) => {
    const h = Math.round(((n || 0) / max) * 56);
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", String(i * 10));
    r.setAttribute("y", String(58 - h));
    r.setAttribute("width", "8");
    r.setAttribute("height", String(h));
    r.setAttribute("fill", "currentColor");
    moves.appendChild(r);
  });
}
function countMove() {
  const i = Math.floor((Date.now() - opened) / 10000);
  while (buckets.length <= i) buckets.push(0);
  buckets[i] += 1;
  drawMoves();
}

// Pool: the feed of events; each one refreshes the tables.
const feed = document.getElementById("feed");
if (feed && window.EventSource) {
  const es = new EventSource(feed.dataset.source);
  es.onmessage = (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch { return; }
    if (e.event === "job_moved") countMove();
    const li = document.createElement("li");
    li.textContent = new Date().toLocaleTimeString() + "  " + describe(e);
    feed.prepend(li);
    while (feed.children.length > 200) feed.lastChild.remove();
    refreshLive();
  };
}

// Stream: the live tail.
const tail = document.getElementById("tail");
if (tail && window.EventSource) {
  const body = tail.querySelector("tbody");
  const es = new EventSource(tail.dataset.source);
  es.onmessage = (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch { return; }
    const tr = document.createElement("tr");
    for (const text of [e.id, e.name, e.payload !== undefined ? e.payload : "(base64) " + e.payload_base64]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    body.prepend(tr);
    while (body.children.length > 100) body.lastChild.remove();
  };
}

// Map: refresh the table on every change.
const live = document.getElementById("live");
if (live && live.dataset.watch && window.EventSource) {
  const es = new EventSource(live.dataset.watch);
  for (const kind of ["set", "delete", "reset"]) es.addEventListener(kind, refreshLive);
}

// DOM building and formatting shared by the pages. No state.

export const STATES = ["queued", "scheduled", "active", "dead", "completed", "cancelled"];
export const FINISHED = new Set(["completed", "dead", "cancelled"]);

// h("a", {href, class: "x", onclick: f}, "text", child, [more]) -> Element.
// Attributes whose value is null, undefined or false are left out; true sets an empty one.
export function h(tag, attrs, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
                 : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export const nowS = () => Date.now() / 1000;

const NUM = new Intl.NumberFormat();
export function fmtNum(n) {
  return n === null || n === undefined ? "–" : NUM.format(n);
}

// 0.4 -> "0.4", 12.34 -> "12", 1234 -> "1.2k": a rate, short.
export function fmtRate(r) {
  if (!Number.isFinite(r) || r <= 0) return "0";
  if (r < 10) return (Math.round(r * 10) / 10).toString();
  if (r < 1000) return Math.round(r).toString();
  if (r < 1e6) return (Math.round(r / 100) / 10) + "k";
  return (Math.round(r / 1e5) / 10) + "M";
}

// seconds -> "850 ms", "12.3 s", "4 min 5 s", "2 h 3 min", "3 d 4 h"
export function fmtDuration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "–";
  s = Math.max(0, s);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s < 10 ? (Math.round(s * 10) / 10) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min${Math.round(s % 60) ? ` ${Math.round(s % 60)} s` : ""}`;
  const hr = Math.floor(m / 60);
  if (hr < 24) return `${hr} h${m % 60 ? ` ${m % 60} min` : ""}`;
  const d = Math.floor(hr / 24);
  return `${d} d${hr % 24 ? ` ${hr % 24} h` : ""}`;
}

// a time relative to now: "just now", "3 min ago", "in 2 h"
export function fmtAgo(t) {
  if (t === null || t === undefined) return "–";
  const d = nowS() - t;
  if (Math.abs(d) < 1.5) return "just now";
  return d > 0 ? `${fmtDuration(d)} ago` : `in ${fmtDuration(-d)}`;
}

const pad = (n) => String(n).padStart(2, "0");
// local time, "2026-11-30 20:11:45"
export function fmtTime(t) {
  if (t === null || t === undefined) return "–";
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtClock(t) {
  const d = new Date(t * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// A <time> that says "3 min ago" and shows the exact time on hover; kept fresh by tick().
export function ago(t) {
  if (t === null || t === undefined) return h("span", { class: "muted" }, "–");
  return h("time", { datetime: new Date(t * 1000).toISOString(), title: fmtTime(t),
                     "data-ago": t }, fmtAgo(t));
}

export function tick(root = document) {
  for (const el of root.querySelectorAll("time[data-ago]")) {
    el.textContent = fmtAgo(Number(el.dataset.ago));
  }
}

export function badge(state) {
  return h("span", { class: `badge badge-${state}` }, state);
}

export function pretty(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

// A <pre> of a JSON value, or a muted note when there is none.
export function jsonBlock(value, none = "none") {
  if (value === null || value === undefined) return h("p", { class: "muted" }, none);
  return h("pre", { class: "code", tabindex: "0" }, pretty(value));
}

export function debounce(fn, ms) {
  let timer = null;
  const run = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
  run.cancel = () => clearTimeout(timer);
  return run;
}

// Calls fn at most once per ms; a call inside the window runs once at its end.
export function throttle(fn, ms) {
  let last = 0, timer = null;
  const run = () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) { last = Date.now(); fn(); return; }
    if (!timer) timer = setTimeout(() => { timer = null; last = Date.now(); fn(); }, wait);
  };
  run.cancel = () => { clearTimeout(timer); timer = null; };
  return run;
}

// "#/queues/emails?state=dead" -> {parts: ["queues", "emails"], query: URLSearchParams}
export function parseHash(hash) {
  const raw = hash.replace(/^#/, "") || "/";
  const [path, qs] = raw.split("?", 2);
  // a malformed escape (a hand-edited link) is taken as it is, not thrown: the page then
  // says "not found" instead of hanging at "connecting"
  const decode = (part) => { try { return decodeURIComponent(part); } catch { return part; } };
  const parts = path.split("/").filter(Boolean).map(decode);
  return { parts, query: new URLSearchParams(qs || "") };
}

export function queueHref(name, query) {
  const qs = query && [...query].length ? `?${query}` : "";
  return `#/queues/${encodeURIComponent(name)}${qs}`;
}

export function jobHref(id) {
  return `#/jobs/${encodeURIComponent(id)}`;
}

// A table cell with its column's name for the narrow (stacked) layout.
export function td(label, ...children) {
  return h("td", { "data-label": label }, ...children);
}

// Brings tbody's rows in line with items, keeping the row (and whatever has the focus in
// it) of an item already shown: make(item) builds a row, fill(tr, item) writes it.
export function syncRows(tbody, items, keyOf, make, fill) {
  const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
  let prev = null;
  for (const item of items) {
    const key = String(keyOf(item));
    let tr = old.get(key);
    if (tr) old.delete(key);
    else { tr = make(item); tr.dataset.key = key; }
    fill(tr, item);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
}

// Sets an element's text only when it changed (no needless DOM work on each update).
export function setText(el, text) {
  text = String(text);
  if (el.textContent !== text) el.textContent = text;
}

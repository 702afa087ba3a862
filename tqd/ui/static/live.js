// Live updates: GET /v1/events (Server-Sent Events) read with fetch(), so that the token
// can go in a header (EventSource cannot send one), resumed with Last-Event-ID after a
// drop. A server without the stream (404) is polled instead.

import { authHeaders, getToken, renewToken } from "./api.js";

const WATCHDOG_MS = 45000;  // the server pings every 15 s: silence this long is a dead link
const MAX_BACKOFF_MS = 30000;

// The header's indicator: live, polling, reconnecting or offline.
export function setLiveState(state) {
  const el = document.getElementById("live-state");
  if (!el) return;
  el.dataset.state = state;
  el.querySelector(".live-text").textContent = state;
}

// An SSE parser (the WHATWG event-stream format): feed it text as it comes; it calls
// onEvent({event, data, id}) at each blank line that ends an event with data.
export function sseParser(onEvent) {
  let buf = "", event = "", data = [], lastId = null, retry = null;
  function line(ln) {
    if (ln === "") {
      if (data.length) onEvent({ event: event || "message", data: data.join("\n"), id: lastId });
      event = ""; data = [];
      return;
    }
    if (ln.startsWith(":")) return;  // a comment (": ping")
    const i = ln.indexOf(":");
    const field = i < 0 ? ln : ln.slice(0, i);
    let value = i < 0 ? "" : ln.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && !value.includes("\0")) lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }
  const feed = (text) => {
    buf += text;
    for (;;) {
      const m = /\r\n|\n|\r/.exec(buf);
      if (!m || (m[0] === "\r" && m.index === buf.length - 1)) break;  // "\r" may start "\r\n"
      line(buf.slice(0, m.index));
      buf = buf.slice(m.index + m[0].length);
    }
  };
  feed.state = () => ({ lastId, retry });
  feed.setLastId = (id) => { lastId = id; };
  return feed;
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
});

// One page's live view: `params` of /v1/events, `onEvent(kind, data)` for each event,
// `refresh()` to read the state again (after a reset, on a fresh stream, or each poll).
export class Live {
  constructor({ params, onEvent, refresh, pollMs = 3000 }) {
    this.params = params;
    this.onEvent = onEvent;
    this.refresh = refresh;
    this.pollMs = pollMs;
    this.stopper = new AbortController();
    this.lastId = null;
    this.timer = null;
    this.polling = false;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopper.abort();
    clearInterval(this.timer);
  }

  get stopped() {
    return this.stopper.signal.aborted;
  }

  poll() {
    this.polling = true;
    setLiveState("polling");
    this.timer = setInterval(() => { if (!document.hidden) this.refreshNow(); }, this.pollMs);
  }

  // Reads the state again; a failure is shown by the indicator (the page keeps what it has).
  async refreshNow() {
    try {
      await this.refresh();
      if (this.polling && !this.stopped) setLiveState("polling");
    } catch (e) {
      if (this.polling && !this.stopped) setLiveState("offline");
    }
  }

  async run() {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(this.params)) if (v) q.set(k, v);
    const url = `/v1/events?${q}`;
    let failures = 0, retryMs = 2000;
    while (!this.stopped) {
      const ctrl = new AbortController();
      const stop = () => ctrl.abort();
      this.stopper.signal.addEventListener("abort", stop, { once: true });
      try {
        const sent = getToken();
        const headers = { Accept: "text/event-stream", ...authHeaders() };
        if (this.lastId !== null) headers["Last-Event-ID"] = this.lastId;
        const res = await fetch(url, { headers, signal: ctrl.signal, cache: "no-store" });
        if (res.status === 401) {
          await renewToken(sent);  // throws if the user will not sign in
          continue;
        }
        if ([404, 405, 501].includes(res.status)) {  // no event stream on this server
          this.poll();
          return;
        }
        const type = res.headers.get("Content-Type") || "";
        if (!res.ok || !type.startsWith("text/event-stream")) throw new Error(`events: ${res.status}`);
        failures = 0;
        setLiveState("live");
        if (this.lastId === null) this.refreshNow();  // a fresh stream starts now: read "now"
        retryMs = await this.read(res, ctrl) || retryMs;
      } catch (e) {
        if (this.stopped) return;
        if (e && e.status === 401) { setLiveState("offline"); return; }
      } finally {
        this.stopper.signal.removeEventListener("abort", stop);
      }
      if (this.stopped) return;
      failures += 1;
      setLiveState(failures > 3 ? "offline" : "reconnecting");
      await sleep(Math.min(MAX_BACKOFF_MS, retryMs * 2 ** Math.min(failures - 1, 5)), this.stopper.signal);
    }
  }

  // Reads one response to its end; gives the server's retry (ms) if it sent one.
  async read(res, ctrl) {
    const feed = sseParser(({ event, data, id }) => {
      this.lastId = id;
      let obj;
      try { obj = JSON.parse(data); } catch { return; }
      if (event === "reset") this.refreshNow();
      else this.onEvent(event, obj);
    });
    feed.setLastId(this.lastId);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let watchdog = setTimeout(() => ctrl.abort(), WATCHDOG_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        clearTimeout(watchdog);
        watchdog = setTimeout(() => ctrl.abort(), WATCHDOG_MS);
        feed(value);
      }
    } finally {
      clearTimeout(watchdog);
    }
    return feed.state().retry;
  }
}

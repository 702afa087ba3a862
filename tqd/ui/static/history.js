// The charts' data: each queue's counters over the last hour (GET /v1/history), kept
// current with the stats the page sees live. On a server without /v1/history the page
// starts with none and gathers its own samples while it is open.

import { ApiError, calls } from "./api.js";
import { nowS } from "./util.js";

const HOUR = 3600;
const GAUGES = ["queued", "scheduled", "active", "dead"];
const TOTALS = ["enqueued_total", "completed_total", "failed_total"];

export const BACKLOG = [["queued", "Queued"], ["scheduled", "Scheduled"], ["active", "Active"], ["dead", "Dead"]];
export const THROUGHPUT = [["enqueued", "Enqueued"], ["completed", "Completed"], ["failed", "Failed"]];

export class History {
  constructor(interval = 10) {
    this.interval = interval;
    this.byQueue = new Map();  // name -> [sample, ...] by time
    this.server = false;  // whether the server keeps history (else only this page's samples)
    this.skew = 0;  // how far this browser's clock is behind the server's, at least
  }

  // The time on the server's clock, as near as the samples tell.
  now() {
    return nowS() + this.skew;
  }

  // The server's samples of these queues (all when null), if it keeps any.
  async load(queues = null) {
    try {
      const h = await calls.history(queues);
      this.interval = h.interval_s || this.interval;
      this.server = true;
      for (const [name, samples] of Object.entries(h.series || {})) {
        const sorted = samples.slice().sort((a, b) => a.t - b.t);
        this.byQueue.set(name, sorted);
        if (sorted.length) this.skew = Math.max(this.skew, sorted[sorted.length - 1].t - nowS());
      }
    } catch (e) {
      if (!(e instanceof ApiError) || ![404, 405].includes(e.status)) throw e;
    }
    return this;
  }

  // A queue's stats as of now (GET /v1/queues/{q}, or an event). The samples stay an
  // interval apart: the newest stands for "now", replaced by the next, until it is an
  // interval after the one before it; then it is kept.
  add(stats, t = this.now()) {
    const s = { t };
    for (const k of [...GAUGES, ...TOTALS]) s[k] = stats[k] || 0;
    const list = this.byQueue.get(stats.name) || [];
    const last = list[list.length - 1];
    if (last && t <= last.t) return;
    if (list.length > 1 && last.t - list[list.length - 2].t < this.interval) list[list.length - 1] = s;
    else list.push(s);
    while (list.length && list[0].t < t - HOUR) list.shift();
    this.byQueue.set(stats.name, list);
  }

  forget(name) {
    this.byQueue.delete(name);
  }

  // Backlog (gauges) and throughput (per second, from the totals' change) over the queues
  // named (all when null), summed by sampling interval; the last point sums each queue's
  // newest sample, so that it agrees with the counts the page shows.
  series(names = null) {
    const buckets = new Map();
    const add = (key, s, prev) => {
      let row = buckets.get(key);
      if (!row) {
        row = { t: s.t, queued: 0, scheduled: 0, active: 0, dead: 0, enqueued: 0, completed: 0, failed: 0 };
        buckets.set(key, row);
      }
      row.t = Math.max(row.t, s.t);
      for (const k of GAUGES) row[k] += s[k];
      if (prev && s.t > prev.t) {
        const dt = s.t - prev.t;
        for (const k of TOTALS) row[k.replace("_total", "")] += Math.max(0, s[k] - prev[k]) / dt;
      }
    };
    for (const [name, list] of this.byQueue) {
      if (names && !names.includes(name) || !list.length) continue;
      const kept = new Map();  // a queue's last sample in each interval: none counts twice
      for (const s of list.slice(0, -1)) kept.set(Math.round(s.t / this.interval), s);
      let prev = null;
      for (const [b, s] of kept) {
        add(b, s, prev);
        prev = s;
      }
      // its rate over an interval at least, not the moment since the last kept sample
      const newest = list[list.length - 1];
      let ref = null;
      for (let i = list.length - 2; i >= 0 && !ref; i--) if (newest.t - list[i].t >= this.interval) ref = list[i];
      add("now", newest, ref || prev);
    }
    const rows = [...buckets.values()].sort((a, b) => a.t - b.t);
    const to = this.now();
    const from = Math.max(to - HOUR, rows.length ? Math.min(rows[0].t, to - 60) : to - 60);
    const pick = (defs, skipFirst) => defs.map(([name, label]) => ({
      name, label, points: (skipFirst ? rows.slice(1) : rows).map((r) => [r.t, r[name]]),
    }));
    const gap = this.interval * 3.5;
    return {
      backlog: { series: pick(BACKLOG, false), from, to, gap },
      throughput: { series: pick(THROUGHPUT, true), from, to, gap },
    };
  }

  // One queue's queued count over time, for a sparkline.
  points(name, key = "queued") {
    return (this.byQueue.get(name) || []).map((s) => [s.t, s[key]]);
  }

  // A queue's completions (or another total) per second over about the last minute.
  rate(name, key = "completed_total", window = 60) {
    const list = this.byQueue.get(name) || [];
    if (list.length < 2) return null;
    const b = list[list.length - 1];
    let a = list[0];
    for (let i = list.length - 2; i >= 0; i--) {
      a = list[i];
      if (b.t - a.t >= window) break;
    }
    return b.t > a.t ? Math.max(0, b[key] - a[key]) / (b.t - a.t) : null;
  }
}

// The overview: every queue with its depth by state, paused or not, the oldest queued
// job's age, and the backlog and throughput of the last hour; kept live.

import { allQueues, calls } from "./api.js";
import { LineChart, sparkline } from "./charts.js";
import { confirmAction, notify } from "./dialogs.js";
import { History } from "./history.js";
import { Live } from "./live.js";
import {
  clear, fmtDuration, fmtNum, fmtRate, h, nowS, queueHref, setText, STATES, syncRows, td, throttle,
} from "./util.js";

const TILES = [
  ["queued", "Queued"], ["scheduled", "Scheduled"], ["active", "Active"], ["dead", "Dead"],
  ["completed", "Completed"], ["rate", "Completed / s"],
];

// Pause or resume a queue, after asking. Gives the queue's new stats, or null.
export async function togglePause(q) {
  const pausing = !q.paused;
  const ok = await confirmAction({
    title: `${pausing ? "Pause" : "Resume"} queue ${q.name}?`,
    message: pausing ? "Workers will lease no job from it until it is resumed. Enqueues still work."
                     : "Workers will lease its jobs again.",
    confirm: pausing ? "Pause queue" : "Resume queue",
  });
  if (!ok) return null;
  try {
    const stats = await (pausing ? calls.pause(q.name) : calls.resume(q.name));
    notify(`Queue ${q.name} ${pausing ? "paused" : "resumed"}.`);
    return stats;
  } catch (e) {
    notify(`Could not ${pausing ? "pause" : "resume"} ${q.name}: ${e.message}`, "error");
    return null;
  }
}

export async function overview(main) {
  const queues = new Map();  // name -> stats (with `seen`: when the page got them)
  const history = await new History().load();
  const backlog = new LineChart("Backlog", { format: fmtRate });
  const throughput = new LineChart("Throughput", { unit: "/s" });
  const tiles = new Map(TILES.map(([k]) => [k, h("strong", { class: "tile-value" }, "–")]));
  const filter = h("input", { id: "queue-filter", type: "search", placeholder: "Filter queues",
                              autocomplete: "off" });
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true });
  const cols = ["Queue", "Status", ...STATES.map((s) => s[0].toUpperCase() + s.slice(1)),
                "Oldest queued", "Queued, last hour", "Actions"];

  clear(main).append(
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Overview"),
      h("p", { class: "muted" }, "Every queue on this node, live.")),
    h("section", { class: "tiles", "aria-label": "Totals over all queues" },
      TILES.map(([k, label]) => h("div", { class: `tile tile-${k}` },
        h("span", { class: "tile-label" }, label), tiles.get(k)))),
    h("section", { class: "charts", "aria-label": "The last hour" }, backlog.figure, throughput.figure),
    h("section", { class: "card", "aria-labelledby": "queues-title" },
      h("div", { class: "card-head" }, h("h2", { id: "queues-title" }, "Queues"),
        h("div", { class: "field-inline" }, h("label", { for: "queue-filter", class: "sr-only" }, "Filter queues"), filter)),
      h("div", { class: "table-wrap" },
        h("table", { class: "table queues" },
          h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))), tbody)),
      empty));

  const makeRow = (q) => {
    const tr = h("tr", {});
    const pause = h("button", { type: "button", class: "btn btn-sm", "data-action": "pause" });
    pause.addEventListener("click", async () => {
      const stats = await togglePause(queues.get(q.name));
      if (stats) update(stats);
    });
    tr.append(td("Queue", h("a", { href: queueHref(q.name), class: "queue-link" }, q.name)),
      td("Status", h("span", { class: "badge" })),
      ...STATES.map((s) => td(s[0].toUpperCase() + s.slice(1), h("span", { class: `num n-${s}` }))),
      td("Oldest queued", h("span", { class: "oldest" })),
      td("Queued, last hour", h("span", { class: "spark-cell" })),
      td("Actions", pause));
    return tr;
  };
  const fillRow = (tr, q) => {
    const status = tr.querySelector(".badge");
    setText(status, q.paused ? "paused" : "running");
    status.className = `badge ${q.paused ? "badge-paused" : "badge-running"}`;
    for (const s of STATES) {
      const el = tr.querySelector(`.n-${s}`);
      setText(el, fmtNum(q[s]));
      el.classList.toggle("zero", !q[s]);
    }
    const age = q.oldest_queued_age === null ? null : q.oldest_queued_age + (nowS() - q.seen);
    setText(tr.querySelector(".oldest"), age === null ? "–" : fmtDuration(age));
    tr.querySelector(".oldest").classList.toggle("warn", age !== null && age > 300);
    clear(tr.querySelector(".spark-cell")).append(
      sparkline(history.points(q.name), "queued", `queued jobs of ${q.name} over the last hour`));
    const pause = tr.querySelector("[data-action=pause]");
    setText(pause, q.paused ? "Resume" : "Pause");
    pause.setAttribute("aria-label", `${q.paused ? "Resume" : "Pause"} queue ${q.name}`);
  };

  const draw = () => {
    const s = history.series();
    backlog.update(s.backlog);
    throughput.update(s.throughput);
  };
  const render = throttle(() => {
    const all = [...queues.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    const needle = filter.value.trim().toLowerCase();
    const shown = needle ? all.filter((q) => q.name.toLowerCase().includes(needle)) : all;
    syncRows(tbody, shown, (q) => q.name, makeRow, fillRow);
    empty.hidden = shown.length > 0;
    setText(empty, all.length ? "No queue matches the filter." :
      "No queues yet: enqueue a job (POST /v1/queues/{queue}/jobs) and it shows here.");
    for (const [k] of TILES) {
      if (k !== "rate") setText(tiles.get(k), fmtNum(all.reduce((n, q) => n + q[k], 0)));
    }
    const rates = all.map((q) => history.rate(q.name)).filter((r) => r !== null);
    setText(tiles.get("rate"), rates.length ? fmtRate(rates.reduce((a, b) => a + b, 0)) : "–");
    draw();  // the charts' last point is these counts
  }, 250);
  function update(q) {
    q.seen = nowS();
    queues.set(q.name, q);
    history.add(q);
    render();
  }
  async function refresh() {
    const list = await allQueues();
    const names = new Set(list.map((q) => q.name));
    for (const name of [...queues.keys()]) {
      if (!names.has(name)) { queues.delete(name); history.forget(name); }
    }
    list.forEach(update);
  }
  filter.addEventListener("input", render);

  await refresh();
  const live = new Live({
    params: { types: "queue" },
    refresh,
    onEvent: (kind, data) => {
      if (kind !== "queue") return;
      if (data.deleted) { queues.delete(data.queue); history.forget(data.queue); render(); }
      else update(data);
    },
  }).start();
  // a sample of every queue each interval, so that quiet queues' lines go on too
  const sampler = setInterval(() => {
    for (const q of queues.values()) history.add(q);
    render();
  }, Math.max(2000, Math.min(history.interval * 1000, 10000)));
  return {
    stop() {
      live.stop();
      clearInterval(sampler);
      render.cancel();
      backlog.destroy();
      throughput.destroy();
    },
  };
}

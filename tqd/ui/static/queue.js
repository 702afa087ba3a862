// A queue's page: its counts and charts, its jobs a page at a time (state, type and
// priority filters; the API's `after`/`next` cursors), search by id, and the queue's
// actions: pause/resume, redrive, purge.

import { ApiError, calls } from "./api.js";
import { LineChart } from "./charts.js";
import { confirmAction, notify } from "./dialogs.js";
import { History } from "./history.js";
import { Live } from "./live.js";
import { togglePause } from "./overview.js";
import {
  ago, badge, clear, fmtNum, fmtRate, h, jobHref, queueHref, setText, STATES, syncRows, td, throttle,
} from "./util.js";

const PAGE_SIZES = [10, 25, 50, 100];
const cap = (s) => s[0].toUpperCase() + s.slice(1);

function when(j) {  // the time that matters most in the job's state
  if (j.state === "scheduled") return ["runs", j.run_at];
  if (j.state === "active") return ["started", j.started_at];
  if (j.finished_at) return [j.state, j.finished_at];
  return ["ready", j.run_at];
}

function select(id, label, options, value) {
  return [h("label", { for: id }, label),
    h("select", { id, name: id.replace("f-", "") },
      options.map(([v, text]) => h("option", { value: v, selected: String(v) === String(value) }, text)))];
}

export async function queuePage(main, name, query) {
  const f = {
    state: STATES.includes(query.get("state")) ? query.get("state") : "",
    type: query.get("type") || "",
    priority: /^[0-9]$/.test(query.get("priority") || "") ? query.get("priority") : "",
    limit: PAGE_SIZES.includes(Number(query.get("limit"))) ? Number(query.get("limit")) : 25,
  };
  let stats = await calls.queue(name);
  const history = await new History().load([name]);
  const backlog = new LineChart("Backlog", { format: fmtRate });
  const throughput = new LineChart("Throughput", { unit: "/s" });
  const cursors = [""];
  let page = 0, next = null;

  const title = h("h1", { tabindex: "-1" }, h("span", { class: "queue-name" }, name));
  const status = h("span", { class: "badge" });
  const pauseBtn = h("button", { type: "button", class: "btn", "data-action": "pause" });
  const redriveBtn = h("button", { type: "button", class: "btn", "data-action": "redrive" }, "Redrive dead");
  const purgeBtn = h("button", { type: "button", class: "btn btn-danger-ghost", "data-action": "purge" }, "Purge…");
  const tabs = h("ul", { class: "tabs" });
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true });
  const pageInfo = h("span", { class: "muted", "aria-live": "polite" });
  const prev = h("button", { type: "button", class: "btn btn-sm", "data-action": "prev" }, "← Previous");
  const nextBtn = h("button", { type: "button", class: "btn btn-sm", "data-action": "next" }, "Next →");
  const searchInput = h("input", { id: "job-search", name: "id", type: "search", autocomplete: "off",
                                   spellcheck: "false", placeholder: "Job id", required: true });
  const searchError = h("p", { class: "form-error", role: "alert", hidden: true });
  const filterForm = h("form", { class: "filters", "aria-label": "Filter jobs" },
    h("div", { class: "field" }, select("f-state", "State", [["", "Any"], ...STATES.map((s) => [s, s])], f.state)),
    h("div", { class: "field" }, h("label", { for: "f-type" }, "Type"),
      h("input", { id: "f-type", name: "type", value: f.type, placeholder: "Any", autocomplete: "off" })),
    h("div", { class: "field" }, select("f-priority", "Priority",
      [["", "Any"], ...[9, 8, 7, 6, 5, 4, 3, 2, 1, 0].map((p) => [String(p), String(p)])], f.priority)),
    h("div", { class: "field" }, select("f-limit", "Per page", PAGE_SIZES.map((n) => [n, n]), f.limit)),
    h("div", { class: "field field-buttons" },
      h("button", { type: "submit", class: "btn btn-primary" }, "Apply"),
      h("a", { class: "btn", href: queueHref(name) }, "Clear")));
  const searchForm = h("form", { class: "search", role: "search", "aria-label": "Find a job by id" },
    h("div", { class: "field" }, h("label", { for: "job-search" }, "Find a job by id"),
      h("div", { class: "input-row" }, searchInput, h("button", { type: "submit", class: "btn" }, "Find"))),
    searchError);

  clear(main).append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
      h("ol", {}, h("li", {}, h("a", { href: "#/" }, "Overview")), h("li", { "aria-current": "page" }, name))),
    h("div", { class: "page-head" }, h("div", { class: "title-row" }, title, status),
      h("div", { class: "actions", role: "group", "aria-label": "Queue actions" }, pauseBtn, redriveBtn, purgeBtn)),
    h("nav", { "aria-label": "Jobs by state" }, tabs),
    h("section", { class: "charts", "aria-label": "The last hour" }, backlog.figure, throughput.figure),
    h("section", { class: "card", "aria-labelledby": "jobs-title" },
      h("div", { class: "card-head" }, h("h2", { id: "jobs-title" }, f.state ? `${cap(f.state)} jobs` : "Jobs")),
      h("div", { class: "toolbar" }, filterForm, searchForm),
      h("div", { class: "table-wrap" }, h("table", { class: "table jobs" },
        h("thead", {}, h("tr", {}, ["Job", "Type", "Priority", "State", "Attempts", "Enqueued", "When", "Worker"]
          .map((c) => h("th", { scope: "col" }, c)))), tbody)),
      empty,
      h("div", { class: "pager" }, prev, pageInfo, nextBtn)));

  const href = (changes) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...f, ...changes })) {
      if (v !== "" && !(k === "limit" && Number(v) === 25)) q.set(k, v);
    }
    return queueHref(name, q);
  };
  function showStats() {
    setText(status, stats.paused ? "paused" : "running");
    status.className = `badge ${stats.paused ? "badge-paused" : "badge-running"}`;
    setText(pauseBtn, stats.paused ? "Resume" : "Pause");
    redriveBtn.disabled = !stats.dead;
    setText(redriveBtn, `Redrive dead (${fmtNum(stats.dead)})`);
    const total = STATES.reduce((n, s) => n + stats[s], 0);
    clear(tabs).append(...[["", "All", total], ...STATES.map((s) => [s, cap(s), stats[s]])].map(([s, label, n]) =>
      h("li", {}, h("a", { href: href({ state: s }), class: `tab tab-${s || "all"}`,
                           "aria-current": s === f.state ? "page" : null },
        label, h("span", { class: "count" }, fmtNum(n))))));
  }
  const draw = () => {
    const s = history.series([name]);
    backlog.update(s.backlog);
    throughput.update(s.throughput);
  };
  const makeRow = (j) => {
    const tr = h("tr", {});
    tr.append(td("Job", h("a", { href: jobHref(j.id), class: "mono" }, j.id)), td("Type"), td("Priority"),
      td("State"), td("Attempts"), td("Enqueued"), td("When"), td("Worker"));
    return tr;
  };
  const fillRow = (tr, j) => {
    const c = tr.children;
    setText(c[1], j.type ?? "–");
    setText(c[2], j.priority);
    clear(c[3]).append(badge(j.state));
    setText(c[4], `${j.attempt} / ${j.max_attempts}`);
    clear(c[5]).append(ago(j.created_at));
    const [what, t] = when(j);
    clear(c[6]).append(t ? h("span", {}, `${what} `, ago(t)) : "–");
    setText(c[7], j.worker ?? "–");
  };
  async function loadPage() {
    const res = await calls.jobs(name, { state: f.state, type: f.type, priority: f.priority,
                                         limit: f.limit, after: cursors[page] });
    // the filters again here: a server older than the type/priority filters ignores them
    const jobs = res.jobs.filter((j) => (!f.type || j.type === f.type) &&
      (f.priority === "" || j.priority === Number(f.priority)) && (!f.state || j.state === f.state));
    next = res.next;
    syncRows(tbody, jobs, (j) => j.id, makeRow, fillRow);
    empty.hidden = jobs.length > 0;
    setText(empty, next ? "No matching job on this page; there are more on the next." : "No matching jobs.");
    prev.disabled = page === 0;
    nextBtn.disabled = !next;
    setText(pageInfo, `Page ${page + 1}`);
  }
  async function refresh() {
    stats = await calls.queue(name);
    history.add(stats);
    showStats();
    draw();
    await loadPage();
  }
  const reload = throttle(() => loadPage().catch(() => {}), 1000);
  const drawSoon = throttle(draw, 1000);

  pauseBtn.addEventListener("click", async () => {
    const s = await togglePause(stats);
    if (s) { stats = s; showStats(); }
  });
  redriveBtn.addEventListener("click", async () => {
    const ok = await confirmAction({
      title: `Redrive dead jobs of ${name}?`,
      message: `${fmtNum(stats.dead)} dead jobs. They go back to queued, oldest first, with their attempts reset.`,
      confirm: "Redrive", fields: [{ name: "limit", label: "At most", value: "1000",
        options: [["100", "100 jobs"], ["1000", "1,000 jobs"], ["10000", "10,000 jobs"], ["100000", "100,000 jobs"]] }],
    });
    if (!ok) return;
    try {
      const r = await calls.redrive(name, Number(ok.limit));
      notify(`Moved ${fmtNum(r.moved)} dead jobs of ${name} back to queued.`);
      await refresh();
    } catch (e) { notify(`Could not redrive ${name}: ${e.message}`, "error"); }
  });
  purgeBtn.addEventListener("click", async () => {
    const ok = await confirmAction({
      title: `Purge jobs of ${name}?`, danger: true, confirm: "Delete jobs",
      message: "Deletes every job of the queue in the chosen state. This cannot be undone.",
      fields: [{ name: "state", label: "State", value: "dead",
        options: ["dead", "completed", "cancelled"].map((s) => [s, `${s} (${fmtNum(stats[s])})`]) }],
    });
    if (!ok) return;
    try {
      const r = await calls.purge(name, ok.state);
      notify(`Deleted ${fmtNum(r.deleted)} ${ok.state} jobs of ${name}.`);
      await refresh();
    } catch (e) { notify(`Could not purge ${name}: ${e.message}`, "error"); }
  });
  filterForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const d = new FormData(filterForm);
    location.hash = href({ state: d.get("state"), type: d.get("type").trim(), priority: d.get("priority"),
                           limit: d.get("limit") });
  });
  searchForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = searchInput.value.trim();
    searchError.hidden = true;
    try {
      await calls.job(id);
      location.hash = jobHref(id);
    } catch (err) {
      searchError.hidden = false;
      searchError.textContent = err instanceof ApiError && err.status === 404 ? `No job with id ${id}.` : err.message;
    }
  });
  const turn = (to) => {
    page = to;
    loadPage().catch((e) => notify(`Could not load the page: ${e.message}`, "error"));
  };
  prev.addEventListener("click", () => { if (page > 0) turn(page - 1); });
  nextBtn.addEventListener("click", () => {
    if (!next) return;
    cursors[page + 1] = next;
    turn(page + 1);
  });

  history.add(stats);
  showStats();
  draw();
  await loadPage();
  const live = new Live({
    params: { queues: name, types: "queue,job" },
    refresh,
    onEvent: (kind, data) => {
      if (kind === "queue" && data.name === name) {
        stats = data;
        history.add(stats);
        showStats();
        drawSoon();
      } else if (kind === "queue" && data.deleted && data.queue === name) {
        refresh().catch(() => {});
      } else if (kind === "job") reload();
    },
  }).start();
  const sampler = setInterval(() => { history.add(stats); draw(); },
    Math.max(2000, Math.min(history.interval * 1000, 10000)));
  return {
    stop() {
      live.stop();
      clearInterval(sampler);
      reload.cancel();
      drawSoon.cancel();
      backlog.destroy();
      throughput.destroy();
    },
  };
}

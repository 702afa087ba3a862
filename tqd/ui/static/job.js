// A job's page: its record (docs/protocol.md "The job record") as details, a timeline,
// payload, result, progress and the error log with tracebacks; retry and cancel.

import { ApiError, calls } from "./api.js";
import { confirmAction, notify } from "./dialogs.js";
import { Live } from "./live.js";
import {
  ago, badge, clear, fmtDuration, fmtTime, h, jsonBlock, queueHref, setText, throttle,
} from "./util.js";

const RETRYABLE = new Set(["dead", "cancelled"]);
const CANCELLABLE = new Set(["queued", "scheduled", "active", "dead"]);

// A progress value as a percentage, when it reads as one: 0.4, 40, {"pct": 40}, ...
export function percent(p) {
  let v = p;
  if (v && typeof v === "object") v = ["pct", "percent", "progress"].map((k) => v[k]).find((x) => typeof x === "number");
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) return null;
  return Math.min(100, v <= 1 ? v * 100 : v);
}

// What the record tells of the job's life, oldest first: [{t, kind, text, detail}].
export function timeline(j) {
  const ev = [{ t: j.created_at, kind: "enqueued", text: "Enqueued", detail: `priority ${j.priority}` }];
  const kept = j.errors.length && j.errors[0].attempt > 1 ? " (older attempts' errors were not kept)" : "";
  if (j.run_at && j.run_at > j.created_at + 0.5 && !j.started_at) {
    ev.push({ t: j.run_at, kind: "scheduled", text: j.state === "scheduled" ? "Will be ready" : "Became ready" });
  }
  for (const e of j.errors) {
    const last = e.attempt === j.attempt && j.started_at && j.started_at <= e.at;
    ev.push({ t: e.at, kind: "failed", text: `Attempt ${e.attempt} failed: ${e.error}`,
              detail: last ? `ran ${fmtDuration(e.at - j.started_at)}` : "" });
  }
  if (j.started_at && j.attempt > 0) {
    ev.push({ t: j.started_at, kind: "started", text: `Attempt ${j.attempt} started`,
              detail: j.worker ? `by ${j.worker}` : "" });
  }
  if (j.state === "active" && j.lease_expires_at) {
    ev.push({ t: j.lease_expires_at, kind: "lease", text: "Lease ends", detail: "unless the worker extends it" });
  }
  if (j.state === "scheduled" && j.started_at && j.run_at) {
    ev.push({ t: j.run_at, kind: "scheduled", text: "Retry due" });
  }
  if (j.finished_at) {
    const ran = j.started_at && j.started_at <= j.finished_at ? `after ${fmtDuration(j.finished_at - j.created_at)} in all` : "";
    const text = { completed: "Completed", dead: "Dead", cancelled: "Cancelled" }[j.state] || `Finished (${j.state})`;
    const detail = j.state === "completed" && j.started_at ? `ran ${fmtDuration(j.finished_at - j.started_at)}; ${ran}` : ran;
    ev.push({ t: j.finished_at, kind: j.state, text, detail });
  }
  ev.sort((a, b) => a.t - b.t);
  if (kept) ev[0].detail += kept;
  return ev;
}

function dl(rows) {
  return h("dl", { class: "details" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function when(t) {
  return t ? h("span", {}, fmtTime(t), " ", h("span", { class: "muted" }, "(", ago(t), ")")) : "–";
}

export async function jobPage(main, id) {
  let job = await calls.job(id);
  const title = h("h1", { tabindex: "-1" }, "Job ", h("span", { class: "mono" }, id));
  const state = h("span");
  const retryBtn = h("button", { type: "button", class: "btn", "data-action": "retry" }, "Retry");
  const cancelBtn = h("button", { type: "button", class: "btn btn-danger-ghost", "data-action": "cancel" }, "Cancel job");
  const gone = h("p", { class: "banner", role: "alert", hidden: true },
    "This job no longer exists: it was deleted by retention, a purge or its queue's deletion.");
  const crumbQueue = h("li");
  const sec = (id, label) => {
    const body = h("div", { class: "card-body" });
    return [h("section", { class: `card sec-${id}`, "aria-labelledby": `${id}-title` },
      h("div", { class: "card-head" }, h("h2", { id: `${id}-title` }, label)), body), body];
  };
  const [details, detailsBody] = sec("details", "Details");
  const [progress, progressBody] = sec("progress", "Progress");
  const [time, timeBody] = sec("timeline", "Timeline");
  const [payload, payloadBody] = sec("payload", "Payload");
  const [result, resultBody] = sec("result", "Result");
  const [errors, errorsBody] = sec("errors", "Errors");

  clear(main).append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
      h("ol", {}, h("li", {}, h("a", { href: "#/" }, "Overview")), crumbQueue,
        h("li", { "aria-current": "page", class: "mono" }, id))),
    h("div", { class: "page-head" }, h("div", { class: "title-row" }, title, state),
      h("div", { class: "actions", role: "group", "aria-label": "Job actions" }, retryBtn, cancelBtn)),
    gone,
    h("div", { class: "grid-2" }, details, h("div", { class: "stack" }, progress, time)),
    h("div", { class: "grid-2" }, payload, result),
    errors);

  function render() {
    const j = job;
    clear(crumbQueue).append(h("a", { href: queueHref(j.queue) }, j.queue));
    clear(state).append(badge(j.state));
    retryBtn.disabled = !RETRYABLE.has(j.state);
    retryBtn.title = retryBtn.disabled ? "only a dead or cancelled job can be retried" : "";
    cancelBtn.disabled = !CANCELLABLE.has(j.state);
    cancelBtn.title = cancelBtn.disabled ? "a finished job cannot be cancelled" : "";
    clear(detailsBody).append(dl([
      ["Queue", h("a", { href: queueHref(j.queue) }, j.queue)], ["Type", j.type ?? "–"],
      ["Priority", String(j.priority)], ["Attempts", `${j.attempt} of ${j.max_attempts}`],
      ["Lease length", fmtDuration(j.timeout)], ["Key", j.key ?? "–"], ["Worker", j.worker ?? "–"],
      ["Enqueued", when(j.created_at)], ["Ready", when(j.run_at)], ["Started", when(j.started_at)],
      ["Finished", when(j.finished_at)], ["Lease ends", when(j.lease_expires_at)],
      ["Trace", j.traceparent ? h("code", {}, j.traceparent) : "–"],
    ]));
    const pct = percent(j.progress);
    clear(progressBody).append(pct === null ? "" : h("div", { class: "progress-row" },
      h("progress", { max: "100", value: pct.toFixed(1), "aria-label": "Progress" }),
      h("span", {}, `${Math.round(pct)}%`)), jsonBlock(j.progress, "No progress reported."));
    clear(timeBody).append(h("ol", { class: "timeline" }, timeline(j).map((e) =>
      h("li", { class: `tl tl-${e.kind}` }, h("span", { class: "tl-dot", "aria-hidden": "true" }),
        h("div", {}, h("strong", {}, e.text), e.detail ? h("span", { class: "muted" }, ` · ${e.detail}`) : "",
          h("div", { class: "muted small" }, when(e.t)))))));
    clear(payloadBody).append(jsonBlock(j.payload, "No payload."));
    clear(resultBody).append(jsonBlock(j.result, j.state === "completed" ? "No result." : "No result yet."));
    clear(errorsBody).append(j.errors.length ? h("ol", { class: "errors" }, [...j.errors].reverse().map((e) =>
      h("li", {}, h("details", { open: e === j.errors[j.errors.length - 1] ? true : null },
        h("summary", {}, h("strong", {}, `Attempt ${e.attempt}`), ` · ${fmtTime(e.at)} · `,
          h("span", { class: "error-text" }, e.error)),
        e.details ? h("pre", { class: "code traceback", tabindex: "0" }, e.details)
                  : h("p", { class: "muted" }, "No details."))))) : h("p", { class: "muted" }, "No errors."));
  }

  async function load() {
    try {
      job = await calls.job(id);
      gone.hidden = true;
      render();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) gone.hidden = false;
      else throw e;
    }
  }

  async function act(kind) {
    const retry = kind === "retry";
    const ok = await confirmAction(retry ? {
      title: `Retry job ${id}?`, confirm: "Retry job",
      message: "It goes back to queued with its attempts reset to 0; its error log is kept.",
    } : {
      title: `Cancel job ${id}?`, confirm: "Cancel job", danger: true,
      message: job.state === "active" ? "Its worker's lease ends now: the worker's next call about it gets lease_lost."
                                      : "It will not run. A cancelled job can be retried later.",
    });
    if (!ok) return;
    try {
      await (retry ? calls.retry(id) : calls.cancel(id));
      notify(retry ? `Job ${id} is queued again.` : `Job ${id} is cancelled.`);
    } catch (e) {
      notify(`Could not ${kind} job ${id}: ${e.message}`, "error");
    }
    await load().catch(() => {});
  }
  retryBtn.addEventListener("click", () => act("retry"));
  cancelBtn.addEventListener("click", () => act("cancel"));

  render();
  const reload = throttle(() => load().catch(() => {}), 300);
  const live = new Live({
    params: { job: id, types: "job" }, pollMs: 2000,
    refresh: load,
    onEvent: (kind, data) => {
      if (kind !== "job") return;
      if (data.state === "deleted") gone.hidden = false;
      else reload();
    },
  }).start();
  return { stop() { live.stop(); reload.cancel(); } };
}

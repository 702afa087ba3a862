// The dashboard's start: the router (#/, #/queues/<name>, #/jobs/<id>, #/cluster), the header (the
// node's role and health, the live indicator, sign out) and the error panel.

import { ApiError, calls, onTokenChange, renewToken, setToken } from "./api.js";
import { clusterPage } from "./cluster.js";
import { jobPage } from "./job.js";
import { setLiveState } from "./live.js";
import { overview } from "./overview.js";
import { queuePage } from "./queue.js";
import { clear, h, parseHash, tick } from "./util.js";

const main = document.getElementById("main");
let current = null;  // the page shown: {stop()}
let generation = 0;  // a newer navigation makes an older, still loading page give up

function errorPanel(e, retry) {
  const needsToken = e instanceof ApiError && e.status === 401;
  const button = h("button", { type: "button", class: "btn btn-primary" }, needsToken ? "Sign in" : "Try again");
  button.addEventListener("click", async () => {
    if (needsToken) {
      try { await renewToken(null); } catch { return; }
    }
    retry();
  });
  const text = e instanceof ApiError ? e.message : `Something went wrong: ${e && e.message}`;
  return h("div", { class: "panel panel-error", role: "alert" },
    h("h1", { tabindex: "-1" }, needsToken ? "Sign in needed" : e.status === 404 ? "Not found" : "Could not load this page"),
    h("p", {}, text), e.status === 403 ? h("p", { class: "muted" }, "Your token's role or queues do not allow this.") : "",
    h("p", {}, button, " ", h("a", { href: "#/", class: "btn" }, "Overview")));
}

function markNav(name) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route(focus = true) {
  const gen = ++generation;
  if (current) { current.stop(); current = null; }
  setLiveState("connecting");
  const { parts, query } = parseHash(location.hash);
  let load, label;
  if (parts[0] === "queues" && parts[1]) {
    load = () => queuePage(main, parts[1], query);
    label = `${parts[1]} · queue`;
  } else if (parts[0] === "jobs" && parts[1]) {
    load = () => jobPage(main, parts[1]);
    label = `job ${parts[1]}`;
  } else if (parts[0] === "cluster") {
    load = () => clusterPage(main);
    label = "cluster";
  } else {
    load = () => overview(main);
    label = "overview";
  }
  markNav(label === "overview" || label === "cluster" ? label : "");
  document.title = `${label} · tqd`;
  main.setAttribute("aria-busy", "true");
  try {
    const page = await load();
    if (gen !== generation) { page.stop(); return; }
    current = page;
  } catch (e) {
    if (gen !== generation) return;
    console.warn("tqd:", e);
    setLiveState("offline");
    clear(main).append(errorPanel(e, () => route()));
  } finally {
    main.removeAttribute("aria-busy");
  }
  if (focus) {
    const h1 = main.querySelector("h1");
    if (h1) h1.focus({ preventScroll: true });
  }
}

async function showNode() {
  const pill = document.getElementById("node-role");
  try {
    const c = await calls.cluster();
    const role = c.role === "standalone" ? "standalone" : `${c.role} · term ${c.term}`;
    pill.textContent = c.writable ? role : `${role} · read only`;
    pill.className = `pill ${c.writable ? "pill-ok" : "pill-warn"}`;
    pill.title = c.node ? `node ${c.node}` : "this node";
  } catch (e) {
    pill.textContent = e instanceof ApiError && e.status === 0 ? "unreachable" : "unknown";
    pill.className = "pill pill-bad";
  }
}

function start() {
  const signOut = document.getElementById("sign-out");
  onTokenChange((has) => { signOut.hidden = !has; });
  signOut.addEventListener("click", () => {
    setToken(null);
    route();
  });
  window.addEventListener("hashchange", () => route());
  document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
  setInterval(() => tick(), 5000);
  setInterval(showNode, 15000);
  route(false).then(showNode);
}

start();

// The JSON API (docs/protocol.md), with the user's token when the server asks for one.
//
// A call answered 401 asks for a token (dialogs.askToken), keeps it in sessionStorage (this
// tab only) and is made again; every call sends it as `Authorization: Bearer <token>`.

import { askToken } from "./dialogs.js";

const KEY = "tqd.token";
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  try { return sessionStorage.getItem(KEY); } catch { return null; }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(KEY, token); else sessionStorage.removeItem(KEY);
  } catch { /* storage refused (private mode): the token lives as long as the page */ }
  for (const fn of listeners) fn(Boolean(token));
}

export function onTokenChange(fn) {
  listeners.add(fn);
  fn(Boolean(getToken()));
}

export function authHeaders() {
  const t = getToken();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

// After a 401 for a call sent with `sent` (a token or null): a token to try again with.
// Throws ApiError 401 when the user cancels the prompt.
export async function renewToken(sent) {
  const current = getToken();
  if (current && current !== sent) return current;  // another call has signed in meanwhile
  if (sent) setToken(null);
  const token = await askToken(sent ? "That token was refused. Check it and try again." : "");
  if (!token) throw new ApiError(401, "unauthorized", "This server needs an access token.");
  setToken(token);
  return token;
}

function url(path, query) {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function decode(res) {
  const type = res.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await res.json().catch(() => null) : null;
  if (res.ok) return res.status === 204 ? null : body;
  const code = body && body.error ? body.error : `http_${res.status}`;
  const message = body && body.message ? body.message : `${res.status} ${res.statusText}`;
  throw new ApiError(res.status, code, message);
}

// api("/v1/queues", {query: {limit: 10}}) -> the decoded JSON answer; throws ApiError.
// quiet: a 401 is thrown, not answered with a prompt (background calls).
export async function api(path, { method = "GET", query, body, signal, quiet = false } = {}) {
  for (let limited = 0; ; ) {
    const sent = getToken();
    const headers = { Accept: "application/json", ...authHeaders() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(url(path, query), {
        method, headers, signal, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, "network", "The server cannot be reached.");
    }
    if (res.status === 401 && !quiet) {
      await renewToken(sent);
      continue;
    }
    if (res.status === 429 && limited++ < 3) {  // past the rate limit: nothing was applied
      const wait = Number(res.headers.get("Retry-After")) || 1;
      await new Promise((resolve) => setTimeout(resolve, Math.min(wait, 30) * 1000));
      continue;
    }
    return decode(res);
  }
}

const enc = encodeURIComponent;

// The calls the pages make, by name.
export const calls = {
  queues: (after, limit = 1000) => api("/v1/queues", { query: { after, limit } }),
  queue: (name) => api(`/v1/queues/${enc(name)}`),
  jobs: (name, query) => api(`/v1/queues/${enc(name)}/jobs`, { query }),
  job: (id) => api(`/v1/jobs/${enc(id)}`),
  history: (queues) => api("/v1/history", { query: { queues: queues ? queues.join(",") : null } }),
  cluster: () => api("/v1/cluster", { quiet: true }),
  retry: (id) => api(`/v1/jobs/${enc(id)}/retry`, { method: "POST" }),
  cancel: (id) => api(`/v1/jobs/${enc(id)}`, { method: "DELETE" }),
  pause: (name) => api(`/v1/queues/${enc(name)}/pause`, { method: "POST" }),
  resume: (name) => api(`/v1/queues/${enc(name)}/resume`, { method: "POST" }),
  redrive: (name, limit) => api(`/v1/queues/${enc(name)}/redrive`, { method: "POST", body: { limit } }),
  purge: (name, state) => api(`/v1/queues/${enc(name)}/jobs`, { method: "DELETE", query: { state } }),
};

// Every queue's stats, a page at a time (at most `pages` pages of 1000).
export async function allQueues(pages = 10) {
  const out = [];
  let after = null;
  for (let i = 0; i < pages; i++) {
    const page = await calls.queues(after);
    out.push(...page.queues);
    if (!page.next) break;
    after = page.next;
  }
  return out;
}

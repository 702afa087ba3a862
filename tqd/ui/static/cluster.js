// The cluster page (#/cluster): this node's role, term, lease and log position; on the
// leader, each follower with its lag and whether it is in the in-sync set (which only may
// take over); and the node's background loops. GET /v1/cluster, read again every 2 s.

import { api } from "./api.js";
import { setLiveState } from "./live.js";
import { ago, badge, clear, fmtDuration, fmtNum, h, setText, syncRows, td } from "./util.js";

const REFRESH_MS = 2000;
const status = () => api("/v1/cluster");  // (not quiet: with --auth, this page asks for a token)
const FOLLOWER_COLS = ["Node", "Address", "Has up to", "Behind by", "Behind for", "In-sync set",
                       "Last fetch"];
const LOOP_COLS = ["Loop", "State", "Passes", "Errors handled", "Restarts", "Last pass", "Last error"];

function yesNo(ok, yes, no) {
  return h("span", { class: `badge ${ok ? "badge-running" : "badge-paused"}` }, ok ? yes : no);
}

// The leader's own dashboard, for a follower's link (its URL is the node's advertised one).
function leaderUi(url) {
  return h("a", { href: `${url}/ui/#/cluster`, class: "mono" }, url);
}

function nodeRows(c) {
  const rows = [["Node", h("span", { class: "mono" }, c.node || "–")],
                ["Role", badge(c.role)],
                ["Takes writes", yesNo(c.writable, "yes", "no: read only")],
                ["Term", fmtNum(c.term)],
                ["Log position", c.log_term === undefined ? fmtNum(c.applied_seq)
                  : `${fmtNum(c.applied_seq)} (term ${fmtNum(c.log_term)})`]];
  if (c.role === "standalone") return rows;
  rows.push(["Leader", c.leader ? (c.leader === c.url ? "this node" : leaderUi(c.leader))
                                : h("span", { class: "warn" }, "none known: writes get 503")],
            ["Address", h("span", { class: "mono" }, c.url)],
            ["Lease", [c.lease_store, " ", yesNo(c.lease_store_ok, "reachable", "failing")]],
            [c.role === "leader" ? "Last renewal sent" : "Lease last changed",
             `${fmtDuration(c.lease_age_s)} ago`],
            ["Sync replicas", fmtNum(c.sync_replicas)],
            ["In-sync set", (c.isr || []).join(", ") || "–"],
            ["Snapshots restored", fmtNum(c.snapshots_restored)]);
  return rows;
}

function followerRow() {
  const tr = h("tr", {});
  for (const col of FOLLOWER_COLS) tr.append(td(col, h("span", { class: "v" })));
  return tr;
}

function fillFollower(tr, f, syncing) {
  const cells = tr.querySelectorAll(".v");
  const text = [f.node, f.url, fmtNum(f.acked_seq), `${fmtNum(f.lag)} entries`,
                f.lag ? fmtDuration(f.lag_s) : "–", null, `${fmtDuration(f.last_fetch_s)} ago`];
  text.forEach((t, i) => { if (t !== null) setText(cells[i], t); });
  cells[1].className = "v mono";
  cells[3].classList.toggle("warn", f.lag > 0);
  if (!syncing) {  // without sync replicas there is no in-sync set to be in
    setText(cells[5], "–");
    cells[5].className = "v";
    return;
  }
  setText(cells[5], f.in_sync ? "in sync" : "out");
  cells[5].className = `v badge ${f.in_sync ? "badge-running" : "badge-paused"}`;
}

function loopRow() {
  const tr = h("tr", {});
  for (const col of LOOP_COLS) tr.append(td(col, h("span", { class: "v" })));
  return tr;
}

function fillLoop(tr, l) {
  const cells = tr.querySelectorAll(".v");
  setText(cells[0], l.name);
  setText(cells[1], l.running ? "running" : "stopped");
  cells[1].className = `v badge ${l.running ? "badge-running" : "badge-dead"}`;
  setText(cells[2], fmtNum(l.runs));
  setText(cells[3], fmtNum(l.errors));
  setText(cells[4], fmtNum(l.restarts));
  cells[4].classList.toggle("warn", l.restarts > 0);
  clear(cells[5]).append(l.last_run ? ago(l.last_run) : "–");
  setText(cells[6], l.last_error ? l.last_error : "–");
}

function table(caption, cols, tbody) {
  return h("div", { class: "table-wrap" },
    h("table", { class: "table" }, h("caption", { class: "sr-only" }, caption),
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))), tbody));
}

export async function clusterPage(main) {
  let c = await status();
  const details = h("div", { class: "card-body", id: "cluster-node" });
  const followers = h("tbody", { id: "cluster-followers" });
  const note = h("p", { class: "empty", id: "cluster-followers-note" });
  const loops = h("tbody", { id: "cluster-loops" });
  const failed = h("p", { class: "banner", role: "alert", hidden: true });

  clear(main).append(
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Cluster"),
      h("p", { class: "muted" }, "This node's view, read again every 2 seconds.")),
    failed,
    h("section", { class: "card", "aria-labelledby": "node-title" },
      h("div", { class: "card-head" }, h("h2", { id: "node-title" }, "This node")), details),
    h("section", { class: "card", "aria-labelledby": "followers-title" },
      h("div", { class: "card-head" }, h("h2", { id: "followers-title" }, "Followers")),
      table("Followers of this leader", FOLLOWER_COLS, followers), note),
    h("section", { class: "card", "aria-labelledby": "loops-title" },
      h("div", { class: "card-head" }, h("h2", { id: "loops-title" }, "Background loops")),
      table("Background loops", LOOP_COLS, loops)));

  const render = () => {
    clear(details).append(h("dl", { class: "details" },
      nodeRows(c).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
    syncRows(followers, c.followers || [], (f) => f.node, followerRow,
             (tr, f) => fillFollower(tr, f, c.sync_replicas > 0));
    clear(note);
    if (c.role === "standalone") {
      note.append("This server runs alone (no --lease-store): it has no followers.");
    } else if (c.role === "follower") {
      note.append("Followers are listed by the leader",
        ...(c.leader ? [": ", leaderUi(c.leader)] : [" (none known now)"]), ".");
    } else if (!(c.followers || []).length) {
      note.append("No follower has fetched from this leader yet.");
    }
    note.hidden = !note.firstChild;
    syncRows(loops, c.loops || [], (l) => l.name, loopRow, fillLoop);
    setLiveState("polling");  // (this page reads the status again; it has no event stream)
  };
  render();

  let stopped = false;
  let timer = null;
  const again = async () => {
    try {
      c = await status();
      failed.hidden = true;
      render();
    } catch (e) {
      failed.hidden = false;
      setLiveState("offline");
      setText(failed, `Could not read this node's status: ${e.message}`);
    }
    if (!stopped) timer = setTimeout(again, REFRESH_MS);
  };
  timer = setTimeout(again, REFRESH_MS);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

// Hand-written SVG charts: a time-series line chart with a legend and a hover readout,
// and a sparkline. Colours come from the stylesheet (classes s-<name>), so dark mode
// needs nothing here.

import { clear, fmtClock, fmtRate, fmtTime, h } from "./util.js";

const H = 190;
const M = { top: 10, right: 12, bottom: 24, left: 46 };
const TIME_STEPS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

// The top of the y axis: four steps of 1, 2, 2.5 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 4;
  const raw = v / 4, p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw);
  return step * 4;
}

function clockLabel(t, step) {
  if (step >= 60) return fmtClock(t);
  const d = new Date(t * 1000);
  return `${fmtClock(t)}:${String(d.getSeconds()).padStart(2, "0")}`;
}

// A line chart of series [{name, label, points: [[t, v], ...]}] over [from, to] (seconds).
// `format(v)` writes a value; `gap` (seconds) breaks a line where samples are missing.
export class LineChart {
  constructor(title, { format = fmtRate, unit = "" } = {}) {
    this.title = title;
    this.format = format;
    this.unit = unit;
    this.data = null;
    this.figure = h("figure", { class: "chart" },
      h("figcaption", { class: "chart-title" }, title));
    this.plot = h("div", { class: "chart-plot" });
    this.tip = h("div", { class: "chart-tip", hidden: true });
    this.legend = h("ul", { class: "legend" });
    this.figure.append(this.plot, this.legend);
    this.plot.append(this.tip);
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.plot);
  }

  update(data) {
    this.data = data;
    this.draw();
  }

  destroy() {
    this.resize.disconnect();
  }

  draw() {
    const d = this.data;
    const width = Math.max(260, Math.floor(this.plot.clientWidth || 0));
    if (!d || !this.plot.isConnected) return;
    const { series, from, to, gap = Infinity } = d;
    const span = Math.max(1, to - from);
    const iw = width - M.left - M.right, ih = H - M.top - M.bottom;
    const max = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))));
    const x = (t) => M.left + ((t - from) / span) * iw;
    const y = (v) => M.top + ih - (v / max) * ih;

    const svg = h("svg:svg", { viewBox: `0 0 ${width} ${H}`, width, height: H, role: "img",
                               "aria-label": this.summary(series) });
    const grid = h("svg:g", { class: "grid" });
    for (let i = 0; i <= 4; i++) {
      const v = (max / 4) * i;
      grid.append(h("svg:line", { x1: M.left, x2: width - M.right, y1: y(v), y2: y(v) }),
        h("svg:text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, this.format(v)));
    }
    const step = TIME_STEPS.find((s) => span / s <= Math.max(2, Math.floor(iw / 90))) || 3600;
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      grid.append(h("svg:line", { class: "tick", x1: x(t), x2: x(t), y1: M.top + ih, y2: M.top + ih + 4 }),
        h("svg:text", { x: x(t), y: H - 6, "text-anchor": "middle" }, clockLabel(t, step)));
    }
    svg.append(grid);
    for (const s of series) {
      let line = "", area = "", prev = null, start = null;
      const close = () => { if (prev) area += `L${x(prev[0])},${y(0)}L${x(start[0])},${y(0)}Z`; };
      for (const p of s.points) {
        if (p[0] < from) continue;
        const broken = !prev || p[0] - prev[0] > gap;
        if (broken) { close(); start = p; }
        const cmd = `${broken ? "M" : "L"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`;
        line += cmd;
        area += cmd;
        prev = p;
      }
      close();
      svg.append(h("svg:path", { class: `area s-${s.name}`, d: area || "M0,0" }),
        h("svg:path", { class: `line s-${s.name}`, d: line || "M0,0" }));
    }
    const guide = h("svg:line", { class: "guide", y1: M.top, y2: M.top + ih, visibility: "hidden" });
    svg.append(guide);
    svg.addEventListener("pointermove", (e) => this.hover(e, svg, guide, { x, from, span, iw }));
    svg.addEventListener("pointerleave", () => { this.tip.hidden = true; guide.setAttribute("visibility", "hidden"); });
    for (const old of this.plot.querySelectorAll("svg")) old.remove();
    this.plot.prepend(svg);
    clear(this.legend).append(...series.map((s) => {
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      return h("li", {}, h("span", { class: `swatch s-${s.name}`, "aria-hidden": "true" }),
        `${s.label} `, h("strong", {}, last === null ? "–" : this.format(last)), this.unit);
    }));
  }

  summary(series) {
    const parts = series.map((s) => {
      const last = s.points.length ? this.format(s.points[s.points.length - 1][1]) : "no data";
      return `${s.label} ${last}${this.unit}`;
    });
    return `${this.title}. Latest: ${parts.join(", ")}.`;
  }

  hover(e, svg, guide, { x, from, span, iw }) {
    const box = svg.getBoundingClientRect();
    const t = from + ((e.clientX - box.left - M.left) / iw) * span;
    const pts = this.data.series.map((s) => {
      let best = null;
      for (const p of s.points) if (!best || Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
      return [s, best];
    }).filter(([, p]) => p);
    if (!pts.length) return;
    const at = pts[0][1][0];
    guide.setAttribute("x1", x(at));
    guide.setAttribute("x2", x(at));
    guide.setAttribute("visibility", "visible");
    clear(this.tip).append(h("div", { class: "chart-tip-time" }, fmtTime(at)),
      ...pts.map(([s, p]) => h("div", {}, h("span", { class: `swatch s-${s.name}` }),
        `${s.label}: ${this.format(p[1])}${this.unit}`)));
    this.tip.hidden = false;
    const left = Math.min(Math.max(0, x(at) + 10), box.width - this.tip.offsetWidth - 4);
    this.tip.style.left = `${left}px`;
  }
}

// A small line of values (no axes): [[t, v], ...].
export function sparkline(points, name, label) {
  const W = 96, HH = 24;
  const svg = h("svg:svg", { class: "spark", viewBox: `0 0 ${W} ${HH}`, width: W, height: HH,
                             role: "img", "aria-label": label });
  if (points.length < 2) return svg;
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const max = Math.max(1, ...points.map((p) => p[1]));
  const d = points.map((p, i) => `${i ? "L" : "M"}${(((p[0] - t0) / (t1 - t0 || 1)) * (W - 2) + 1).toFixed(1)},` +
    `${(HH - 2 - (p[1] / max) * (HH - 4)).toFixed(1)}`).join("");
  svg.append(h("svg:path", { class: `line s-${name}`, d }));
  return svg;
}

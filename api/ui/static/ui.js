// The UI's browser side: sortable tables, live learning curves, the parallel-coordinates plot.
// No framework; plotly.js is loaded before this file from the API's own /ui/static route.
"use strict";

const CURVE_KEYS = {
  train_loss: "train loss",
  validation_loss: "validation loss",
  accuracy_argmax: "accuracy (argmax)",
  accuracy_svc: "accuracy (svc)",
  accuracy_svc_heldout: "accuracy (svc held-out)",
};
const POLL_MS = 4000;
const PLOT_CONFIG = { displaylogo: false, responsive: true };
// plotly's default colours; run i is drawn in COLORWAY[i % 10] however its trace is built.
const COLORWAY = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
// Above this many runs the legend is hidden, and finished runs are drawn as one trace per colour
// (their curves joined by gaps): plotly's drawing cost grows with traces far more than with
// points (BENCHMARKS.md, "UI"). Runs still training keep a trace each, so they can grow.
const BUNDLE_ABOVE = 30;
const WAITING = {
  text: "no points yet", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5,
  font: { color: "#6b7385" },
};

// ---- sortable tables -------------------------------------------------------------------
// Cells carry data-value (a number) when numeric; otherwise their text is compared.
function cellKey(cell) {
  const raw = cell.dataset.value;
  if (raw !== undefined && raw !== "") return { num: true, v: Number(raw) };
  return { num: false, v: cell.textContent.trim().toLowerCase() };
}

function sortTable(table, column, descending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellKey(a.cells[column]);
    const y = cellKey(b.cells[column]);
    // Empty cells sort last in both directions.
    if (x.v === "" || Number.isNaN(x.v)) return 1;
    if (y.v === "" || Number.isNaN(y.v)) return -1;
    const order = x.num && y.num ? x.v - y.v : String(x.v).localeCompare(String(y.v));
    return descending ? -order : order;
  });
  rows.forEach((row) => body.appendChild(row));
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
    th.setAttribute("aria-sort", i === column ? (descending ? "descending" : "ascending") : "none");
  });
}

function makeSortable(table) {
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
    th.classList.add("sortable");
    th.addEventListener("click", () => {
      sortTable(table, i, th.getAttribute("aria-sort") === "ascending");
    });
  });
}

function initTables(root) {
  root.querySelectorAll("table.sortable-table").forEach(makeSortable);
}

// ---- learning curves -------------------------------------------------------------------
// One chart per key, one trace per run (also for runs without points yet, so the legend
// always lists every run; on big sweeps finished runs share a trace per colour, BUNDLE_ABOVE).
// Polling asks only for unfinished runs, with `after` per run.
class CurveBoard {
  constructor(root) {
    this.root = root;
    this.url = root.dataset.curvesUrl;
    this.maxPoints = Number(root.dataset.maxPoints || 500);
    this.charts = {};      // key -> div
    this.traceIndex = {};  // key -> {runId: index}
    this.lastStep = {};    // key -> {runId: last step drawn}
    this.active = new Set();
    this.onFinished = null;
  }

  async load() {
    performance.mark("curves-fetch");
    const data = await this.fetch(this.url);
    this.runs = data.runs;
    // One chart per animation frame: the first shows at once, the page stays responsive.
    for (const key of Object.keys(CURVE_KEYS)) {
      this.newChart(key, data);
      await new Promise((resolve) => window.requestAnimationFrame(resolve));
    }
    data.runs.forEach((r) => { if (!r.finished) this.active.add(r.id); });
    performance.mark("curves-drawn");  // bench/ui_curves.py reads these two marks
    this.root.dataset.ready = "1";
    if (this.active.size) this.schedule();
    return data;
  }

  async fetch(url) {
    const sep = url.includes("?") ? "&" : "?";
    const response = await fetch(`${url}${sep}max_points=${this.maxPoints}`, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (response.status === 401) {
      window.location = "/ui/login";
      throw new Error("session expired");
    }
    if (!response.ok) throw new Error(`curves: HTTP ${response.status}`);
    return response.json();
  }

  newChart(key, data) {
    const div = document.createElement("div");
    div.className = "chart";
    div.id = `chart-${key}`;
    div.dataset.key = key;
    this.root.appendChild(div);
    this.charts[key] = div;
    this.traceIndex[key] = {};
    this.lastStep[key] = {};
    // Validation curves have one point per validation: a one-epoch run has a single point,
    // which a plain line never draws, so mark the points (except on crowded charts).
    const markers = key !== "train_loss" && data.runs.length <= 50;
    const mode = markers ? "lines+markers" : "lines";
    const bundle = data.runs.length > BUNDLE_ABOVE;
    const traces = [];
    const bundles = {};  // colour slot -> the trace of the finished runs drawn in that colour
    data.runs.forEach((run, i) => {
      const points = (data.series[key] || {})[run.id] || [[], []];
      this.lastStep[key][run.id] = points[0].length ? points[0][points[0].length - 1] : -1;
      const line = { color: COLORWAY[i % COLORWAY.length] };
      if (bundle && run.finished) {
        let trace = bundles[i % COLORWAY.length];
        if (!trace) {
          trace = { x: [], y: [], customdata: [], name: "finished runs", type: "scatter", mode,
            line, marker: { size: 6 }, connectgaps: false,
            hovertemplate: "%{customdata}<br>%{x:,} inputs: %{y:.4g}<extra></extra>" };
          bundles[i % COLORWAY.length] = trace;
          traces.push(trace);
        }
        if (trace.x.length) {  // a gap between two runs' curves
          trace.x.push(null);
          trace.y.push(null);
          trace.customdata.push(null);
        }
        points[0].forEach((x, j) => {
          trace.x.push(x);
          trace.y.push(points[1][j]);
          trace.customdata.push(run.label);
        });
        return;
      }
      this.traceIndex[key][run.id] = traces.length;
      traces.push({
        x: points[0], y: points[1], name: run.label, type: "scatter", mode, line,
        marker: { size: 6 }, meta: run.id,
        hovertemplate: `${run.label}<br>%{x:,} inputs: %{y:.4g}<extra></extra>`,
      });
    });
    const odd = nonFiniteMarkers(data.runs, data.series[key] || {});
    if (odd.x.length) traces.push(odd);
    this.oddIndex = this.oddIndex || {};
    this.oddIndex[key] = odd.x.length ? traces.length - 1 : null;
    const empty = traces.every((t) => t.x.length === 0);
    const layout = {
      title: { text: CURVE_KEYS[key], font: { size: 14 } },
      annotations: empty ? [WAITING] : [],
      margin: { l: 55, r: 10, t: 36, b: 40 },
      xaxis: { title: { text: "inputs seen" }, rangemode: "tozero" },
      yaxis: { type: key.endsWith("loss") ? "log" : "linear" },
      legend: { font: { size: 10 } },
      showlegend: !bundle,
      uirevision: key,
    };
    Plotly.newPlot(div, traces, layout, PLOT_CONFIG);
  }

  schedule() {
    this.timer = window.setTimeout(() => this.poll().catch(console.error), POLL_MS);
  }

  async poll() {
    const ids = Array.from(this.active);
    const after = ids.map((id) => `${id}:${this.cursor(id)}`).join(",");
    const data = await this.fetch(`/ui/api/curves?runs=${ids.join(",")}&after=${after}`);
    for (const key of Object.keys(CURVE_KEYS)) this.extend(key, data.series[key] || {});
    let finishedNow = false;
    for (const run of data.runs) {
      if (run.finished && this.active.delete(run.id)) finishedNow = true;
    }
    if (finishedNow && this.onFinished) this.onFinished(data);
    if (this.active.size) this.schedule();
  }

  // The smallest last step over keys that have points: the server re-sends from there and
  // extend() drops what is already drawn, so no key misses a point.
  cursor(runId) {
    let smallest = null;
    for (const key of Object.keys(CURVE_KEYS)) {
      const step = this.lastStep[key][runId];
      if (step !== undefined && step >= 0 && (smallest === null || step < smallest)) {
        smallest = step;
      }
    }
    return smallest === null ? -1 : smallest;
  }

  extend(key, seriesByRun) {
    const xs = [];
    const ys = [];
    const indices = [];
    const fresh = {};
    for (const [runId, points] of Object.entries(seriesByRun)) {
      const last = this.lastStep[key][runId];
      const keep = points[0].map((s, i) => i).filter((i) => points[0][i] > last);
      if (!keep.length) continue;
      xs.push(keep.map((i) => points[0][i]));
      ys.push(keep.map((i) => points[1][i]));
      indices.push(this.traceIndex[key][runId]);
      fresh[runId] = [xs[xs.length - 1], ys[ys.length - 1]];
      this.lastStep[key][runId] = points[0][keep[keep.length - 1]];
    }
    if (!indices.length) return;
    Plotly.extendTraces(this.charts[key], { x: xs, y: ys }, indices);
    const odd = nonFiniteMarkers(this.runs, fresh);
    if (odd.x.length && this.oddIndex[key] === null) {
      Plotly.addTraces(this.charts[key], odd);
      this.oddIndex[key] = this.charts[key].data.length - 1;
    } else if (odd.x.length) {
      const more = { x: [odd.x], y: [odd.y], customdata: [odd.customdata] };
      Plotly.extendTraces(this.charts[key], more, [this.oddIndex[key]]);
    }
    if ((this.charts[key].layout.annotations || []).length) {
      Plotly.relayout(this.charts[key], { annotations: [] });
    }
  }
}

// A NaN or infinite value comes as null and leaves a gap in its line; a red cross marks each
// one (at the run's nearest number before it, or after it), so a diverged run is not mistaken
// for one that merely stopped reporting.
function nonFiniteMarkers(runs, seriesByRun) {
  const trace = { x: [], y: [], customdata: [], name: "NaN / inf", type: "scatter",
    mode: "markers", marker: { symbol: "x", size: 9, color: "#d62728" }, showlegend: false,
    hovertemplate: "%{customdata}<br>%{x:,} inputs: not a number (NaN or ±inf)<extra></extra>" };
  const labels = {};
  (runs || []).forEach((r) => { labels[r.id] = r.label; });
  for (const [runId, points] of Object.entries(seriesByRun)) {
    const [steps, values] = points;
    values.forEach((v, j) => {
      if (v !== null) return;
      let near = null;
      for (let k = j - 1; k >= 0 && near === null; k--) near = values[k];
      for (let k = j + 1; k < values.length && near === null; k++) near = values[k];
      if (near === null) return;  // nothing but NaN: no number to place the cross by
      trace.x.push(steps[j]);
      trace.y.push(near);
      trace.customdata.push(labels[runId] || runId);
    });
  }
  return trace;
}

// ---- parallel coordinates --------------------------------------------------------------
// Matrix parameters (numeric axes, or categorical ones with tick labels) against final
// accuracy; one line per run, coloured by that accuracy.
function drawParcoords(div, spec) {
  const dimensions = spec.params.map((name) => {
    const raw = spec.runs.map((r) => r.params[name]);
    if (raw.every((v) => typeof v === "number")) return { label: name, values: raw };
    const labels = Array.from(new Set(raw.map((v) => JSON.stringify(v)))).sort();
    return {
      label: name,
      values: raw.map((v) => labels.indexOf(JSON.stringify(v))),
      tickvals: labels.map((_, i) => i),
      ticktext: labels.map((l) => l.replace(/^"|"$/g, "")),
    };
  });
  const accuracy = spec.runs.map((r) => (r.accuracy === null ? NaN : r.accuracy));
  dimensions.push({ label: spec.accuracy_label, values: accuracy });
  const trace = {
    type: "parcoords",
    line: { color: accuracy, colorscale: "Viridis", showscale: true },
    dimensions,
  };
  const layout = {
    title: { text: `matrix parameters vs ${spec.accuracy_label}`, font: { size: 14 } },
    margin: { l: 70, r: 70, t: 70, b: 30 },
  };
  Plotly.newPlot(div, [trace], layout, PLOT_CONFIG);
}

// A search's progress: each trial's metric (in the order sampled) and the best so far.
function drawBestSoFar(div, search) {
  const points = search.best_so_far;
  const x = points.map((p) => p.trial);
  const value = points.map((p) => (p.value === null ? NaN : p.value));
  const best = points.map((p) => (p.best === null ? NaN : p.best));
  const traces = [
    { type: "scatter", mode: "markers", name: "trial", x, y: value,
      text: points.map((p) => `run #${p.run_id}`) },
    { type: "scatter", mode: "lines", name: "best so far", x, y: best, line: { shape: "hv" } },
  ];
  const layout = {
    title: { text: `${search.metric} against trial number (${search.mode})`, font: { size: 14 } },
    xaxis: { title: { text: "trial" }, dtick: points.length > 20 ? undefined : 1 },
    yaxis: { title: { text: search.metric } },
    margin: { l: 70, r: 30, t: 50, b: 50 },
  };
  Plotly.newPlot(div, traces, layout, PLOT_CONFIG);
}

// ---- live sweep page -------------------------------------------------------------------
// While runs are unfinished, the table and status block are re-fetched as an HTML fragment.
async function refreshFragment(target, url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) return;
  target.innerHTML = await response.text();
  initTables(target);
}

function initPage() {
  initTables(document);
  const board = document.getElementById("curves");
  let curvesDrawn = Promise.resolve();
  if (board) {
    const curves = new CurveBoard(board);
    const live = document.getElementById("live");
    if (live && live.dataset.fragmentUrl) {
      curves.onFinished = () => refreshFragment(live, live.dataset.fragmentUrl);
      // Progress (inputs seen) moves between finishes too.
      const timer = window.setInterval(() => {
        if (!curves.active.size) window.clearInterval(timer);
        refreshFragment(live, live.dataset.fragmentUrl);
      }, POLL_MS * 3);
    }
    curvesDrawn = curves.load().catch((err) => {
      board.textContent = `Could not load curves: ${err.message}`;
    });
  }
  // The parallel-coordinates plot sits below the curves and is WebGL: about a second of the
  // main thread on a machine without a GPU. Drawn after the curves, it no longer holds them up.
  const parcoords = document.getElementById("parcoords");
  const spec = document.getElementById("parcoords-data");
  if (parcoords && spec) {
    curvesDrawn.then(() => drawParcoords(parcoords, JSON.parse(spec.textContent)));
  }
  const bestDiv = document.getElementById("best-so-far");
  const bestData = document.getElementById("best-so-far-data");
  if (bestDiv && bestData) drawBestSoFar(bestDiv, JSON.parse(bestData.textContent));
  const upload = document.getElementById("yaml-file");
  if (upload) {
    upload.addEventListener("change", async () => {
      if (upload.files.length) document.getElementById("yaml").value = await upload.files[0].text();
    });
  }
}

document.addEventListener("DOMContentLoaded", initPage);

// A study's page: charts from the summary (GET /api/studies/{id}/summary, the API's shape), one
// cell's curves and diagnostics, the trial table, live progress while the study runs.
"use strict";

(function () {
  const { data, el, request, duration, poll, setProgress, withResult, studyFinished } = window.LCW;
  const C = window.LCWCharts;
  const T = window.LCWTables;
  const H = window.LCWHeatmap;
  const P = window.LCWProvisional;
  const config = data("page-config");
  const sid = config.study_id;
  const colors = config.colors;
  let study = data("study-data");
  let summary = data("summary-data");
  let cellData = data("cell-data");

  const color = (m) => colors[m] || "#333333";
  const methodRank = (m) => { const i = config.methods.indexOf(m); return i < 0 ? 99 : i; };
  const byMethod = (a, b) => methodRank(a) - methodRank(b);
  const actRank = (a) => { const i = config.activations.indexOf(a); return i < 0 ? 99 : i; };
  const byActivation = (a, b) => actRank(a) - actRank(b);
  const widthsOf = () => [...new Set(summary.cells.map((c) => c.width))];

  // body[data-ready] says the page is usable: every chart drawn, none of the page's own fetches
  // in flight. It is removed while a refresh, another cell or another table page loads, and the
  // first time it is set the page records a "lcw-ready" performance mark (load-time benchmark).
  let working = 0;
  async function track(work) {
    working += 1;
    delete document.body.dataset.ready;
    try {
      return await work();
    } finally {
      await C.settled();
      working -= 1;
      if (working === 0) {
        if (!performance.getEntriesByName("lcw-ready").length) performance.mark("lcw-ready");
        document.body.dataset.ready = "1";
      }
    }
  }

  /** The charts' layout: no plotly legend (each group has one above its grid, see legendOf). */
  // The y axis's auto-margin widens the left margin for its labels but never pushes the top one
  // (its top label fits in the margin): margins known up front spare each chart a second draw.
  const layout = (title, extra) => {
    const out = C.layout(title, Object.assign({ showlegend: false, margin: C.MARGIN_NO_LEGEND }, extra));
    if (out.yaxis.automargin === true) out.yaxis.automargin = "left";
    return out;
  };

  function groupLabel(activation, width) {
    return widthsOf().length > 1 && width !== null ? activation + " · width " + width : activation;
  }

  function chartDiv(holder, key) {
    let div = holder.querySelector('[data-chart="' + key + '"]');
    if (!div) {
      div = el("div", { class: "chart", "data-chart": key });
      holder.append(el("figure", { class: "chart-fig" }, el("figcaption"), div));
    }
    return div;
  }

  /** Create every chart's place first, so each is drawn at its final grid width. */
  function placeCharts(holder, keys) {
    pruneCharts(holder, new Set(keys));
    keys.forEach((key) => chartDiv(holder, key));
  }

  function pruneCharts(holder, keep) {
    holder.querySelectorAll("[data-chart]").forEach((div) => {
      if (!keep.has(div.dataset.chart)) {
        if (div.data) window.Plotly.purge(div);
        (div.closest(".chart-fig") || div).remove();
      }
    });
  }

  // -- one legend per chart group: the methods and their colors -----------------------------------
  // Charts draw no plotly legend of their own (14 legends cost a draw each); a group's legend is a
  // row of buttons above its grid, and a click shows or hides that method in every chart of it.

  const legends = new Map(); // grid id -> {grid, node, shown: Map(method -> bool)}

  function legendOf(gridId) {
    let g = legends.get(gridId);
    if (!g) {
      const grid = document.getElementById(gridId);
      const node = el("div", { class: "chart-legend hidden", role: "group", "aria-label": "Methods shown in these charts", "data-legend": gridId });
      grid.before(node);
      g = { grid: grid, node: node, shown: new Map() };
      node.addEventListener("click", (event) => {
        const button = event.target.closest("button[data-method]");
        if (button) track(() => toggleMethod(g, button.dataset.method));
      });
      legends.set(gridId, g);
    }
    return g;
  }

  /** Whether `method` is shown in the group's charts (`initial` the first time it is asked). */
  function shownIn(g, method, initial) {
    if (!g.shown.has(method)) g.shown.set(method, initial === undefined ? true : initial);
    return g.shown.get(method);
  }

  /** The group's buttons: every method with a trace in one of its charts, in method order. */
  function renderLegend(g) {
    const methods = new Set();
    g.grid.querySelectorAll("[data-chart]").forEach((div) => {
      if (div.data && !div.dataset.empty) div.data.forEach((t) => { if (t.legendgroup) methods.add(t.legendgroup); });
    });
    const buttons = [...methods].sort(byMethod).map((m) => {
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.setProperty("--c", color(m));
      return el("button", { type: "button", class: "legend-item", "data-method": m, "aria-pressed": String(shownIn(g, m)) }, swatch, m);
    });
    g.node.replaceChildren(...buttons);
    g.node.classList.toggle("hidden", !buttons.length);
  }

  function toggleMethod(g, method) {
    const show = !shownIn(g, method);
    g.shown.set(method, show);
    const button = g.node.querySelector('button[data-method="' + CSS.escape(method) + '"]');
    if (button) button.setAttribute("aria-pressed", String(show));
    const draws = [];
    g.grid.querySelectorAll("[data-chart]").forEach((div) => {
      if (!div.data || div.dataset.empty) return;
      const indices = div.data.flatMap((t, i) => (t.legendgroup === method ? [i] : []));
      if (indices.length) draws.push(C.restyle(div, { visible: show }, indices));
    });
    return Promise.all(draws);
  }

  // -- test accuracy vs depth, one chart per activation (and width) -----------------------------

  function drawComparison() {
    const holder = document.getElementById("comparison-charts");
    const groups = new Map();
    const ordered = [...summary.cells].sort((a, b) => byActivation(a.activation, b.activation) || (a.width || 0) - (b.width || 0));
    for (const c of ordered) {
      const key = c.activation + "|" + c.width;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(c);
    }
    const keep = new Set();
    const legend = legendOf("comparison-charts");
    placeCharts(holder, [...groups.keys()].map((key) => "comparison-" + key.replace("|", "-")));
    for (const [key, cells] of groups) {
      const chartKey = "comparison-" + key.replace("|", "-");
      keep.add(chartKey);
      const div = chartDiv(holder, chartKey);
      let provisional = false;
      const fixed = cells.every((c) => c.depth === null);
      const traces = [];
      const methods = [...new Set(cells.map((c) => c.method))].sort(byMethod);
      for (const m of methods) {
        const pts = cells.filter((c) => c.method === m && c.test_acc_mean !== null)
          .sort((a, b) => (a.depth || 0) - (b.depth || 0));
        if (!pts.length) continue;
        const visible = shownIn(legend, m);
        const open = pts.map((c) => P.unfinished(c) > 0);
        if (open.some(Boolean)) provisional = true;
        const x = pts.map((c) => (fixed ? m : c.depth));
        const lo = pts.map((c) => (c.test_acc_ci95 ? c.test_acc_ci95[0] : c.test_acc_mean));
        const hi = pts.map((c) => (c.test_acc_ci95 ? c.test_acc_ci95[1] : c.test_acc_mean));
        if (!fixed) {
          traces.push({
            x: x.concat([...x].reverse()), y: hi.concat([...lo].reverse()), fill: "toself",
            fillcolor: C.rgba(color(m), 0.14), line: { width: 0 }, hoverinfo: "skip",
            legendgroup: m, visible: visible, type: "scatter", mode: "lines",
          });
        }
        traces.push({
          x: x, y: pts.map((c) => c.test_acc_mean), name: m, legendgroup: m, visible: visible, type: "scatter",
          mode: fixed ? "markers" : "lines+markers",
          line: { color: color(m), width: 2.2 },
          marker: { color: open.map((o) => (o ? "#ffffff" : color(m))), size: open.map((o) => (o ? 9 : 7)),
            line: { color: color(m), width: open.map((o) => (o ? 2 : 0)) } },
          error_y: fixed ? { type: "data", symmetric: false, array: hi.map((h, i) => h - pts[i].test_acc_mean),
            arrayminus: lo.map((l, i) => pts[i].test_acc_mean - l), color: color(m) } : undefined,
          customdata: pts.map((c) => [
            c.test_acc_ci95 ? "[" + C.fmt(c.test_acc_ci95[0]) + ", " + C.fmt(c.test_acc_ci95[1]) + "]" : (c.ci95_note || "no CI"),
            T.settingLabel(c.best_lr, c.best_init_scale), c.n, c.diverged, c.stopped_early || 0,
            P.unfinished(c) ? "<br><b>" + P.label(P.unfinished(c)) + "</b>" : "",
          ]),
          hovertemplate: "<b>" + m + "</b> · depth %{x}<br>test acc %{y:.3f}<br>95% CI %{customdata[0]}" +
            "<br>chosen %{customdata[1]} · n=%{customdata[2]}<br>diverged %{customdata[3]} · " +
            "stopped early %{customdata[4]} (not in the mean)%{customdata[5]}<extra></extra>",
        });
      }
      const [activation, width] = key.split("|");
      chartNote(div, provisional ? P.NOTE : "");
      if (!traces.length) { C.empty(div, "No results for " + activation + " yet"); continue; }
      const depths = [...new Set(cells.map((c) => c.depth).filter((d) => d !== null))].sort((a, b) => a - b);
      const logX = depths.length > 2 && depths[depths.length - 1] / depths[0] >= 8;
      C.draw(div, traces, layout("Test accuracy · " + groupLabel(activation, width === "null" ? null : Number(width)), {
        xaxis: fixed ? { type: "category" } : { title: { text: "depth (hidden layers)" }, type: logX ? "log" : "linear", tickvals: depths },
        yaxis: { title: { text: "test accuracy" }, range: [0, 1.02] },
      }));
    }
    pruneCharts(holder, keep);
    renderLegend(legend);
  }

  // -- tables: every cell at its chosen setting, every paired comparison --------------------------

  const byCell = (a, b) => byActivation(a.activation, b.activation) || (a.width || 0) - (b.width || 0) ||
    (a.depth || 0) - (b.depth || 0);

  function drawTables() {
    T.renderAdjustment(document.getElementById("adjustment"), summary);
    document.getElementById("cells-table").replaceChildren(
      T.cellsTable(summary, (a, b) => byCell(a, b) || byMethod(a.method, b.method)));
    const holder = document.getElementById("comparisons-table");
    if (!summary.comparisons.length) {
      holder.replaceChildren(el("p", { class: "muted", text: "No paired comparisons: add lcw or bn_lcw and a baseline to the methods." }));
      return;
    }
    holder.replaceChildren(T.comparisonsTable(summary,
      (a, b) => byCell(a, b) || byMethod(a.method, b.method) || byMethod(a.baseline, b.baseline),
      (r) => (r.depth === null ? r.activation : r.activation + " · depth " + r.depth + (widthsOf().length > 1 ? " · width " + r.width : ""))));
  }

  // -- heatmap: lcw / bn_lcw minus a chosen baseline --------------------------------------------

  const baselineSelect = document.getElementById("baseline-select");

  function fillBaselines() {
    const options = [...new Set(summary.comparisons.map((c) => c.baseline))].sort(byMethod);
    const current = baselineSelect.value;
    baselineSelect.replaceChildren(...options.map((m) => el("option", { value: m, text: m })));
    const nonTarget = options.filter((m) => !config.targets.includes(m));
    // The strongest baseline by mean test accuracy (the server's choice: service.compare), so the
    // page opens on the question that matters, not on the weakest method.
    const strongest = config.default_baseline;
    baselineSelect.value = options.includes(current) ? current
      : (options.includes(strongest) ? strongest : (nonTarget[0] || options[0] || ""));
  }

  function drawHeatmaps() {
    const holder = document.getElementById("heatmap-charts");
    const baseline = baselineSelect.value;
    const keep = new Set();
    const targets = [...new Set(summary.comparisons.map((c) => c.method))].sort(byMethod);
    placeCharts(holder, targets.filter((t) => t !== baseline).map((t) => "heatmap-" + t)
      .concat(targets.length ? [] : ["heatmap-none"]));
    for (const target of targets) {
      if (target === baseline) continue;
      const key = "heatmap-" + target;
      keep.add(key);
      const div = chartDiv(holder, key);
      div.classList.add("chart-auto"); // as tall as its rows, not the line charts' height
      const rows = summary.comparisons.filter((c) => c.method === target && c.baseline === baseline);
      if (!rows.length || rows.every((r) => r.mean_diff === null)) {
        C.empty(div, target + " vs " + baseline + ": no paired seeds with results yet");
        continue;
      }
      C.table(div, H.table(summary, target, baseline, rows, { byActivation, groupLabel }),
        target + " − " + baseline + " (test accuracy)");
    }
    if (!targets.length) {
      keep.add("heatmap-none");
      C.empty(chartDiv(holder, "heatmap-none"), "Add lcw or bn_lcw to the methods to compare against a baseline");
    }
    pruneCharts(holder, keep);
  }

  // -- learning-rate sensitivity ----------------------------------------------------------------

  const lrActivation = document.getElementById("lr-activation-select");

  function fillActivations() {
    const acts = [...new Set(summary.cells.map((c) => c.activation))].sort(byActivation);
    const current = lrActivation.value;
    lrActivation.replaceChildren(...acts.map((a) => el("option", { value: a, text: a })));
    lrActivation.value = acts.includes(current) ? current : (acts.includes("sigmoid") ? "sigmoid" : (acts[0] || ""));
  }

  /** A line of text under a chart (its key), or none. */
  function chartNote(div, text) {
    const fig = div.closest(".chart-fig");
    let note = fig ? fig.querySelector(".chart-note") : null;
    if (!text) { if (note) note.remove(); return; }
    if (!note) { note = el("p", { class: "chart-note" }); fig.append(note); }
    note.textContent = text;
  }

  function drawLR() {
    window.LCWLRCharts.draw({
      holder: document.getElementById("lr-charts"), legend: legendOf("lr-charts"), chartDiv, placeCharts,
      pruneCharts, renderLegend, shownIn, chartNote, layout, color, byMethod, widthsOf,
    }, summary, lrActivation.value);
  }

  // -- one cell: learning curves and diagnostics ------------------------------------------------

  const cellSelect = document.getElementById("cell-select");

  function cellValue(c) { return [c.depth, c.width, c.activation].join("|"); }

  function fillCells() {
    const current = cellSelect.value || (config.default_cell ? config.default_cell.join("|") : "");
    const cells = config.cells;
    cellSelect.replaceChildren(...cells.map((c) => el("option", { value: cellValue(c), text: c.label })));
    const values = cells.map(cellValue);
    cellSelect.value = values.includes(current) ? current : (values[0] || "");
  }

  function drawCell() {
    const trainDiv = document.getElementById("chart-train-loss");
    const accDiv = document.getElementById("chart-test-acc");
    const shiftDiv = document.getElementById("chart-shift");
    const gradDiv = document.getElementById("chart-grad");
    const curveLegend = legendOf("curve-charts"), diagLegend = legendOf("diag-charts");
    if (!cellData) {
      [trainDiv, accDiv, shiftDiv, gradDiv].forEach((d) => C.empty(d, "No cell with results yet"));
      renderLegend(curveLegend);
      renderLegend(diagLegend);
      return;
    }
    const cell = cellData.cell || {};
    const running = cell.activation === undefined ? 0 : P.ofCell(summary, cell.depth, cell.width, cell.activation);
    // A cell with trials still to run: every chart of it says "provisional" in its caption.
    const label = cellData.label + (running ? " (" + P.label(running) + ")" : "");
    const curves = Object.entries(cellData.curves).sort((a, b) => byMethod(a[0], b[0]));
    const curveTrace = (metric) => curves.map(([m, c]) => ({
      type: "scatter", mode: "lines+markers", name: m, legendgroup: m, visible: shownIn(curveLegend, m), x: c.epoch, y: c[metric],
      line: { color: color(m), width: 2 }, marker: { color: color(m), size: 5 },
      customdata: c.n, hovertemplate: "<b>" + m + "</b> (lr " + c.lr + ") · epoch %{x}<br>" +
        metric.replace("_", " ") + " %{y:.4f}<br>n=%{customdata}<extra></extra>",
    }));
    const maxEpoch = Math.max(0, ...curves.map(([, c]) => c.epoch[c.epoch.length - 1] || 0));
    const epochAxis = maxEpoch <= 12 ? { title: { text: "epoch" }, dtick: 1 } : { title: { text: "epoch" } };
    if (curves.length) {
      C.draw(trainDiv, curveTrace("train_loss"), layout("Train loss · " + label, {
        xaxis: epochAxis,
        yaxis: Object.assign({ title: { text: "train loss (log)" }, type: "log" }, C.logTicks(curves.flatMap(([, c]) => c.train_loss))),
      }));
      C.draw(accDiv, curveTrace("test_acc"), layout("Test accuracy · " + label, {
        xaxis: epochAxis, yaxis: { title: { text: "test accuracy" }, range: [0, 1.02] },
      }));
    } else {
      [trainDiv, accDiv].forEach((d) => C.empty(d, "No finished trials in " + label + " yet"));
    }
    renderLegend(curveLegend);
    const diag = Object.entries(cellData.diagnostics).sort((a, b) => byMethod(a[0], b[0]));
    // With both plain and lcw recorded, the other methods start hidden (their buttons unpressed).
    const focus = ["plain", "lcw"].filter((m) => cellData.diagnostics[m]);
    const diagTraces = (metric) => {
      const out = [];
      for (const [m, d] of diag) {
        const visible = shownIn(diagLegend, m, focus.length < 2 || focus.includes(m));
        for (const phase of ["init", "last"]) {
          const series = d[phase];
          if (!series) continue;
          const when = phase === "init" ? "init" : "epoch " + d.last_epoch;
          out.push({
            type: "scatter", mode: "lines+markers", name: m + (phase === "init" ? " · init" : " · last"),
            legendgroup: m, visible: visible, x: series.layer, y: series[metric],
            line: { color: color(m), width: phase === "init" ? 1.6 : 2.4, dash: phase === "init" ? "dot" : "solid" },
            marker: { color: color(m), size: phase === "init" ? 4 : 6, symbol: phase === "init" ? "circle-open" : "circle" },
            hovertemplate: "<b>" + m + "</b> · " + when + " · layer %{x}<br>" + metric.replace("_", " ") +
              " %{y:.3g}<br>mean of " + d.seeds + " seed(s), lr " + d.lr + "<extra></extra>",
          });
        }
      }
      return out;
    };
    const values = (metric) => diag.flatMap(([, d]) => [...((d.init || {})[metric] || []), ...((d.last || {})[metric] || [])]);
    if (diag.length) {
      C.draw(shiftDiv, diagTraces("shift"), layout("Activation shift per layer · " + label, {
        xaxis: { title: { text: "layer" }, dtick: diag.some(([, d]) => (d.init || d.last).layer.length > 12) ? 5 : 1 },
        yaxis: Object.assign({ title: { text: "shift (log)" }, type: "log" }, C.logTicks(values("shift"))),
      }));
      C.draw(gradDiv, diagTraces("grad_norm"), layout("Gradient norm per layer · " + label, {
        xaxis: { title: { text: "layer" }, dtick: diag.some(([, d]) => (d.init || d.last).layer.length > 12) ? 5 : 1 },
        yaxis: Object.assign({ title: { text: "‖∇W‖ (log)" }, type: "log" }, C.logTicks(values("grad_norm"))),
      }));
    } else {
      [shiftDiv, gradDiv].forEach((d) => C.empty(d, diagnosticsAbsent(cellData.label, running)));
    }
    renderLegend(diagLegend);
  }

  /** Why a cell has no diagnostics to draw: off in the spec, or not measured yet. */
  function diagnosticsAbsent(label, running) {
    if (study.spec && study.spec.diagnostics === false) {
      return "Diagnostics are off in this study's spec (diagnostics: false), so activation shift and " +
        "gradient norms were not measured. A study with diagnostics: true records them per layer at init and every epoch.";
    }
    if (running) return "Not measured yet: no trial of " + label + " at its chosen setting has recorded an epoch (" + P.label(running) + ").";
    return "No diagnostics were recorded for " + label + " (its trials ran without them).";
  }

  async function loadCell() {
    const [depth, width, activation] = cellSelect.value.split("|");
    const params = new URLSearchParams({ activation: activation });
    if (depth !== "") params.set("depth", depth);
    if (width !== "") params.set("width", width);
    const res = await request("/studies/" + sid + "/cell?" + params.toString());
    if (res.ok) { cellData = res.body; drawCell(); }
  }

  // -- everything from the summary --------------------------------------------------------------

  function drawAll() {
    const hasResults = summary.cells.some((c) => c.n > 0);
    document.getElementById("results").classList.toggle("hidden", !hasResults);
    document.getElementById("no-results").classList.toggle("hidden", hasResults);
    if (!hasResults) return;
    fillBaselines();
    fillActivations();
    fillCells();
    drawComparison();
    drawTables();
    drawHeatmaps();
    drawLR();
    drawCell();
  }

  baselineSelect.addEventListener("change", drawHeatmaps);
  lrActivation.addEventListener("change", drawLR);
  cellSelect.addEventListener("change", () => track(loadCell));

  // -- trial table: sort, filter, page through the server-rendered fragment ---------------------

  const tableHolder = document.getElementById("trial-table");
  const filters = document.getElementById("trial-filters");
  let tableQuery = new URLSearchParams(window.location.search);

  let tableSeq = 0; // the latest request wins: quick filter changes never show a stale page
  async function loadTable(query) {
    tableQuery = query;
    const seq = ++tableSeq;
    const res = await request("/studies/" + sid + "/table?" + query.toString());
    if (!res.ok || seq !== tableSeq) return;
    tableHolder.innerHTML = res.body; // server-rendered, autoescaped template
    const qs = query.toString();
    history.replaceState(null, "", "/studies/" + sid + (qs ? "?" + qs : "") + window.location.hash);
  }

  tableHolder.addEventListener("click", (event) => {
    const link = event.target.closest("a.sort, a.page-link");
    if (!link) return;
    event.preventDefault();
    const query = new URL(link.href, window.location.href).searchParams;
    track(() => loadTable(query));
  });

  filters.addEventListener("change", () => {
    const query = new URLSearchParams();
    for (const [key, value] of new FormData(filters)) if (value) query.set(key, String(value));
    for (const key of ["sort", "dir"]) if (tableQuery.get(key)) query.set(key, tableQuery.get(key));
    track(() => loadTable(query));
  });
  filters.addEventListener("submit", (event) => { event.preventDefault(); });

  // -- header: live progress while the study runs -----------------------------------------------

  function renderHeader() {
    const p = study.progress;
    const badge = document.getElementById("study-status");
    badge.textContent = study.status;
    badge.className = "badge st-" + study.status;
    setProgress(document.getElementById("study-progress"), p);
    document.querySelectorAll("#study-counts .count[data-status]").forEach((node) => {
      const n = p[node.dataset.status] || 0;
      node.querySelector("b").textContent = String(n);
      node.classList.toggle("zero", n === 0);
    });
    document.getElementById("count-total").textContent = String(p.total);
    let elapsed = null, remaining = null;
    if (study.started_at) {
      const end = study.finished_at ? Date.parse(study.finished_at) : Date.now();
      elapsed = Math.max(0, (end - Date.parse(study.started_at)) / 1000);
      const done = p.total - p.pending - p.running;
      if (study.status === "running" && done > 0) remaining = (elapsed / done) * (p.pending + p.running);
    }
    document.getElementById("elapsed").textContent = duration(elapsed);
    document.getElementById("remaining").textContent = duration(remaining);
    document.getElementById("cancel-form").classList.toggle("hidden", studyFinished(study.status));
  }

  let lastScored = withResult(study.progress);
  let lastRefresh = 0;
  let pendingRefresh = false;

  async function refreshResults() {
    lastRefresh = Date.now();
    pendingRefresh = false;
    const res = await request("/api/studies/" + sid + "/summary");
    if (res.ok) {
      summary = res.body;
      const known = new Set(config.cells.map(cellValue));
      for (const c of summary.cells) {
        const cell = { depth: c.depth, width: c.width, activation: c.activation };
        if (!known.has(cellValue(cell))) {
          cell.label = c.depth === null ? c.activation : "depth " + c.depth + " · width " + c.width + " · " + c.activation;
          config.cells.push(cell);
          known.add(cellValue(cell));
        }
        if (!config.methods.includes(c.method)) config.methods.push(c.method);
      }
      if (!cellData && config.cells.length) {
        const first = config.cells[0];
        cellData = { label: first.label, curves: {}, diagnostics: {} };
      }
      drawAll();
      if (cellSelect.value) await loadCell();
    }
    await loadTable(tableQuery);
  }

  track(async () => { renderHeader(); drawAll(); });

  // Polls the study while it runs; started again when an action (extend, retry: the page's
  // study_actions.js announces the study it got back) makes a finished study run again.
  let clock = null;
  let polling = false;

  function startPolling() {
    if (polling || studyFinished(study.status)) return;
    polling = true;
    clock = setInterval(renderHeader, 1000);
    poll(async () => {
      const res = await request("/api/studies/" + sid);
      if (!res.ok) return true;
      study = res.body;
      renderHeader();
      document.dispatchEvent(new CustomEvent("lcw:progress", { detail: study }));
      const scored = withResult(study.progress);
      const finished = studyFinished(study.status);
      if (scored !== lastScored || finished) pendingRefresh = true;
      lastScored = scored;
      // Redraw the charts at most every 5 s while trials finish, and once at the end.
      if (pendingRefresh && (finished || Date.now() - lastRefresh > 5000)) await track(refreshResults);
      if (finished) {
        clearInterval(clock);
        polling = false;
      }
      return !finished;
    }, 1500);
  }

  startPolling();

  document.addEventListener("lcw:study", (event) => {
    study = event.detail;
    renderHeader();
    track(refreshResults); // new trials and cells show at once
    startPolling();
  });
})();

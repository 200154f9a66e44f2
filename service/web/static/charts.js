// Plotly defaults shared by the study and trial pages: one look, one color per method.
"use strict";

window.LCWCharts = (function () {
  const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", sans-serif';
  const GRID = "#ecece7";

  function rgba(hex, alpha) {
    const n = parseInt(hex.replace("#", ""), 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function axis(extra) {
    return Object.assign({
      gridcolor: GRID, zeroline: false, linecolor: "#cfcfc8", ticks: "outside", tickcolor: "#cfcfc8",
      ticklen: 4, automargin: true, title: { font: { size: 12, color: "#646b73" }, standoff: 6 },
    }, extra || {});
  }

  /** Ticks with labels for a log axis over `values`, and the axis range they sit in.
   * The coarsest of 1 / 1-3 / 1-2-5 / 1..9 per decade that puts at least 3 ticks inside the
   * range; a span too narrow for any (losses from 0.25 to 0.35) gets evenly spaced round values.
   * The range is set with them: plotly's own log autorange can leave every tick outside it. */
  function logTicks(values) {
    const v = values.filter((x) => x !== null && x !== undefined && x > 0 && isFinite(x));
    if (!v.length) return {};
    const min = Math.min(...v), max = Math.max(...v);
    const span = Math.log10(max) - Math.log10(min);
    const pad = Math.max(0.04, 0.06 * span);
    const range = [Math.log10(min) - pad, Math.log10(max) + pad];
    const [a, b] = [Math.pow(10, range[0]), Math.pow(10, range[1])];
    const inside = (t) => t >= a * (1 - 1e-9) && t <= b * (1 + 1e-9);
    let ticks = [];
    for (const steps of [[1], [1, 3], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
      const every = steps.length === 1 ? Math.max(1, Math.ceil(span / 7)) : 1; // at most ~8 decades
      const out = [];
      for (let e = Math.floor(range[0]); e <= Math.ceil(range[1]); e += every) {
        for (const s of steps) out.push(s * Math.pow(10, e));
      }
      ticks = out.filter(inside);
      if (ticks.length >= 3) break;
    }
    if (ticks.length < 3) {  // under a decade with few round values: a linear 1-2-5 step
      const rough = (b - a) / 6, mag = Math.pow(10, Math.floor(Math.log10(rough)));
      const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= rough);
      ticks = [];
      for (let t = Math.ceil(a / step) * step; t <= b; t += step) ticks.push(Number(t.toPrecision(6)));
    }
    const text = ticks.map((t) => (t >= 1e-4 && t < 1e5 ? String(Number(t.toPrecision(3)))
      : t.toExponential(2).replace(/\.?0+e/, "e")));
    return { tickvals: ticks, ticktext: text, range: range };
  }

  // The margins of a chart without a plotly legend (a group legend in HTML above it).
  const MARGIN_NO_LEGEND = { l: 52, r: 12, t: 12, b: 48 };

  function layout(title, extra) {
    const base = {
      _caption: title,
      font: { family: FONT, size: 11.5, color: "#1d2125" },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#ffffff",
      // The margins plotly's auto-margin settles on (a one-row legend above, tick labels and
      // the axis title below): starting there spares every chart a second full draw.
      margin: { l: 52, r: 12, t: 41, b: 48 },
      height: 300,
      showlegend: true,
      legend: { orientation: "h", x: 0, xanchor: "left", y: 1.0, yanchor: "bottom", font: { size: 11 }, bgcolor: "rgba(0,0,0,0)" },
      hoverlabel: { font: { family: FONT, size: 12 }, align: "left" },
      xaxis: axis(), yaxis: axis(),
    };
    const out = Object.assign(base, extra || {});
    out.xaxis = Object.assign(axis(), (extra && extra.xaxis) || {});
    out.yaxis = Object.assign(axis(), (extra && extra.yaxis) || {});
    return out;
  }

  const CONFIG = {
    responsive: true, displaylogo: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines", "hoverCompareCartesian"],
    toImageButtonOptions: { format: "svg", scale: 1 },
  };

  /** The chart's caption (an HTML title above it: wraps on phones instead of overlapping). */
  function caption(div, text) {
    let fig = div.parentElement;
    if (!fig || !fig.classList.contains("chart-fig")) {
      fig = document.createElement("figure");
      fig.className = "chart-fig";
      div.before(fig);
      fig.append(document.createElement("figcaption"), div);
    }
    fig.querySelector("figcaption").textContent = text || "";
  }

  // Draws not yet finished (Plotly.react resolves once the chart is on the page).
  const inflight = new Set();

  /** Draw (or redraw) a chart into `div`. */
  function draw(div, traces, lay) {
    caption(div, lay._caption);
    delete lay._caption;
    div.classList.remove("chart-empty");
    if (div.dataset.empty) { div.replaceChildren(); delete div.dataset.empty; }
    const done = Promise.resolve(window.Plotly.react(div, traces, lay, CONFIG));
    inflight.add(done);
    const settle = () => { inflight.delete(done); };
    done.then(settle, settle);
    return done;
  }

  /** HTML content (a table) in a chart's place, with the chart's caption. */
  function table(div, nodes, title) {
    caption(div, title);
    if (div.data) window.Plotly.purge(div);
    div.classList.remove("chart-empty");
    delete div.dataset.empty;
    div.replaceChildren(...nodes);
  }

  /** Plotly.restyle, counted among the draws in flight (see settled). */
  function restyle(div, update, indices) {
    const done = Promise.resolve(window.Plotly.restyle(div, update, indices));
    inflight.add(done);
    const settle = () => { inflight.delete(done); };
    done.then(settle, settle);
    return done;
  }

  /** Resolves once every draw started so far has finished (or failed). */
  function settled() {
    return Promise.allSettled([...inflight]).then(() => undefined);
  }

  /** A deliberate empty state in a chart's place. */
  function empty(div, text, title) {
    caption(div, title || "");
    if (div.data) window.Plotly.purge(div);
    div.replaceChildren(document.createTextNode(text));
    div.classList.add("chart-empty");
    div.dataset.empty = "1";
  }

  function fmt(value, digits) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(digits === undefined ? 3 : digits);
  }

  function signed(value, digits) {
    if (value === null || value === undefined) return "—";
    const s = Number(value).toFixed(digits === undefined ? 3 : digits);
    return value > 0 ? "+" + s : s;
  }

  return { rgba, layout, draw, table, restyle, empty, settled, fmt, signed, logTicks, CONFIG, MARGIN_NO_LEGEND };
})();

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

  /** 1-2-5 ticks spanning `values` on a log axis (decades only when the span is wide). */
  function logTicks(values) {
    const v = values.filter((x) => x !== null && x !== undefined && x > 0 && isFinite(x));
    if (!v.length) return {};
    const lo = Math.floor(Math.log10(Math.min(...v))), hi = Math.ceil(Math.log10(Math.max(...v)));
    const steps = hi - lo > 3 ? [1] : (hi - lo > 2 ? [1, 3] : [1, 2, 5]);
    const every = Math.max(1, Math.ceil((hi - lo) / 6)); // at most ~7 decade ticks
    const ticks = [];
    for (let e = lo; e <= hi; e += every) for (const s of steps) ticks.push(s * Math.pow(10, e));
    const min = Math.min(...v) / 1.6, max = Math.max(...v) * 1.6;
    const inside = ticks.filter((t) => t >= min && t <= max);
    const text = inside.map((t) => (t >= 1e-3 && t < 1e4 ? String(Number(t.toPrecision(2))) : t.toExponential(0).replace("e", "e")));
    return { tickvals: inside, ticktext: text };
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

// The comparison page: accuracy vs depth of every compared study, one chart per activation (and
// width), each study's LCW method solid and its strongest baseline dotted (GET /api/compare).
"use strict";

(function () {
  const { data, el } = window.LCW;
  const C = window.LCWCharts;
  const compared = data("compare-data");
  if (!compared) return;
  // One color per study (Okabe-Ito), so a study reads the same in every chart.
  const PALETTE = ["#d55e00", "#0072b2", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"];
  const colorOf = new Map(compared.studies.map((s, i) => [s.id, PALETTE[i % PALETTE.length]]));
  const nameOf = new Map(compared.studies.map((s) => [s.id, "#" + s.id + " " + s.name]));
  const holder = document.getElementById("compare-charts");
  const groups = new Map();
  for (const series of compared.series) {
    const key = series.activation + "|" + series.width;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(series);
  }
  const widths = new Set(compared.series.map((s) => s.width));
  // One HTML key above the charts (a plotly legend under a narrow chart runs out of its card).
  const roles = new Map(compared.series.map((s) => [s.study_id + "|" + s.role, s.method]));
  const key = el("ul", { class: "compare-key", id: "compare-key" }, ...compared.studies.map((s) => {
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.setProperty("--c", colorOf.get(s.id));
    return el("li", { "data-study-id": String(s.id) }, swatch, nameOf.get(s.id) + ": " +
      (roles.get(s.id + "|method") || "no LCW") + " solid, " + (roles.get(s.id + "|baseline") || "no baseline") + " dotted");
  }));
  holder.before(key);
  for (const [key, list] of groups) {
    const [activation, width] = key.split("|");
    const div = document.createElement("div");
    div.className = "chart";
    div.dataset.chart = "compare-" + activation + "-" + width;
    holder.append(div);
    const traces = [];
    for (const s of list) {
      const pts = s.points.filter((p) => p.test_acc !== null);
      if (!pts.length) continue;
      const col = colorOf.get(s.study_id);
      const x = pts.map((p) => (p.depth === null ? activation : p.depth));
      const lo = pts.map((p) => (p.ci95 ? p.ci95[0] : p.test_acc));
      const hi = pts.map((p) => (p.ci95 ? p.ci95[1] : p.test_acc));
      if (pts.length > 1) {
        traces.push({ type: "scatter", mode: "lines", x: x.concat([...x].reverse()), y: hi.concat([...lo].reverse()),
          fill: "toself", fillcolor: C.rgba(col, s.role === "method" ? 0.14 : 0.07), line: { width: 0 }, hoverinfo: "skip", showlegend: false });
      }
      const open = pts.map((p) => p.unfinished > 0);
      traces.push({
        type: "scatter", mode: "lines+markers", name: nameOf.get(s.study_id) + " · " + s.method,
        x: x, y: pts.map((p) => p.test_acc),
        line: { color: col, width: s.role === "method" ? 2.4 : 1.8, dash: s.role === "method" ? "solid" : "dot" },
        marker: { color: open.map((o) => (o ? "#ffffff" : col)), size: 8, symbol: s.role === "method" ? "circle" : "square",
          line: { color: col, width: 2 } },
        customdata: pts.map((p) => [p.ci95 ? "[" + C.fmt(p.ci95[0]) + ", " + C.fmt(p.ci95[1]) + "]" : "no CI", p.n,
          p.unfinished ? "<br><b>provisional: " + p.unfinished + " trials still to run</b>" : ""]),
        hovertemplate: "<b>" + nameOf.get(s.study_id) + "</b> · " + s.method + " (" + s.role + ")<br>depth %{x} · test acc %{y:.3f}" +
          "<br>95% CI %{customdata[0]} · n=%{customdata[1]}%{customdata[2]}<extra></extra>",
      });
    }
    const depths = [...new Set(list.flatMap((s) => s.points.map((p) => p.depth)).filter((d) => d !== null))].sort((a, b) => a - b);
    const title = "Test accuracy · " + activation + (widths.size > 1 && width !== "null" ? " · width " + width : "");
    if (!traces.length) { C.empty(div, "No results in the shared cells yet", title); continue; }
    C.draw(div, traces, C.layout(title, {
      showlegend: false, margin: C.MARGIN_NO_LEGEND,
      xaxis: depths.length ? { title: { text: "depth (hidden layers)" }, tickvals: depths } : { type: "category" },
      yaxis: { title: { text: "test accuracy" }, range: [0, 1.02] },
    }));
  }
  C.settled().then(() => { document.body.dataset.ready = "1"; });
})();

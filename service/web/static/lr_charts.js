// The study page's learning-rate sensitivity charts: for one activation, a chart per depth (and
// width) of every method's mean validation accuracy at each setting of the budget (what the
// choice is made on; test accuracy in the tooltip), the chosen setting drawn large and outlined,
// diverged settings crossed, provisional ones open. study.js hands over its chart-group helpers.
"use strict";

window.LCWLRCharts = (function () {
  const C = window.LCWCharts;
  const T = window.LCWTables;
  const P = window.LCWProvisional;

  const SCALE_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "star"];
  const SCALE_GLYPHS = ["●", "■", "◆", "▲", "✚", "★"];
  const SCALE_DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"];
  const scaleOf = (scale) => (scale === undefined ? null : scale);

  /** Draw the charts of `activation` from `summary` with the study page's helpers (`page`). */
  function draw(page, summary, activation) {
    const { holder, legend, chartDiv, placeCharts, pruneCharts, renderLegend, shownIn, chartNote } = page;
    const { layout, color, byMethod, widthsOf } = page;
    const cells = summary.cells.filter((c) => c.activation === activation);
    const groups = new Map();
    for (const c of cells) {
      const key = c.depth + "|" + c.width;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(c);
    }
    const keep = new Set();
    const sorted = [...groups.keys()].sort((a, b) => Number(a.split("|")[0]) - Number(b.split("|")[0]));
    placeCharts(holder, sorted.map((key) => "lr-" + activation + "-" + key.replace("|", "-")));
    for (const key of sorted) {
      const chartKey = "lr-" + activation + "-" + key.replace("|", "-");
      keep.add(chartKey);
      const div = chartDiv(holder, chartKey);
      const traces = [];
      let provisional = false;
      // A point is a setting (lr, init scale): each init scale of the chart is its own series
      // (one marker symbol and dash per scale, named in the chart's note), so nothing is merged.
      const scales = [...new Set(groups.get(key).flatMap((c) => c.lrs.map((l) => scaleOf(l.init_scale))))]
        .sort((a, b) => (a === null ? -1 : b === null ? 1 : a - b));
      const several = scales.length > 1;
      for (const c of groups.get(key).sort((a, b) => byMethod(a.method, b.method))) {
        const lrs = c.lrs.filter((l) => l.n > 0 || l.diverged > 0 || l.stopped_early > 0);
        if (!lrs.length) continue;
        const visible = shownIn(legend, c.method);
        const chosen = (l) => l.lr === c.best_lr && scaleOf(l.init_scale) === scaleOf(c.best_init_scale);
        const open = (l) => P.ofSetting(l) > 0;
        if (lrs.some(open)) provisional = true;
        for (const [i, scale] of scales.entries()) {
          const pts = lrs.filter((l) => scaleOf(l.init_scale) === scale);
          if (!pts.length) continue;
          const label = several ? " " + T.scaleLabel(scale) : "";
          traces.push({
            type: "scatter", mode: "lines+markers", name: c.method + label, legendgroup: c.method, visible: visible,
            // y: the validation accuracy the choice is made on; test accuracy is in the hover only.
            x: pts.map((l) => l.lr), y: pts.map((l) => l.val_acc_mean),
            line: { color: color(c.method), width: 2, dash: SCALE_DASHES[i % SCALE_DASHES.length] },
            marker: { color: pts.map((l) => (open(l) ? "#ffffff" : color(c.method))), symbol: SCALE_SYMBOLS[i % SCALE_SYMBOLS.length],
              size: pts.map((l) => (chosen(l) ? 12 : 7)),
              line: { color: pts.map((l) => (chosen(l) ? "#1d2125" : (open(l) ? color(c.method) : "#fff"))),
                width: pts.map((l) => (chosen(l) || open(l) ? 2 : 1)) } },
            customdata: pts.map((l) => [l.n, l.diverged, l.failed, chosen(l) ? " · chosen" : "",
              T.settingLabel(l.lr, l.init_scale), l.stopped_early || 0, C.fmt(l.test_acc_mean),
              open(l) ? "<br><b>" + P.label(P.ofSetting(l)) + "</b>" : ""]),
            hovertemplate: "<b>" + c.method + "</b> · %{customdata[4]}%{customdata[3]}<br>val acc %{y:.3f}" +
              " (chooses the setting)<br>test acc %{customdata[6]}" +
              "<br>n=%{customdata[0]} · diverged %{customdata[1]} · stopped early %{customdata[5]}" +
              " · failed %{customdata[2]}%{customdata[7]}<extra></extra>",
          });
        }
        const div_ = lrs.filter((l) => l.diverged > 0);
        if (div_.length) {
          traces.push({
            type: "scatter", mode: "markers", name: c.method + " diverged", legendgroup: c.method, visible: visible,
            x: div_.map((l) => l.lr), y: div_.map((l) => (l.val_acc_mean === null ? 0 : l.val_acc_mean)),
            marker: { symbol: "x-thin-open", size: 15, color: color(c.method), line: { width: 2.5, color: color(c.method) } },
            customdata: div_.map((l) => [l.diverged, T.settingLabel(l.lr, l.init_scale)]),
            hovertemplate: "<b>" + c.method + "</b> · %{customdata[1]}<br>%{customdata[0]} diverged<extra></extra>",
          });
        }
      }
      chartNote(div, [several ? "init scale: " + scales.map((scale, i) =>
        SCALE_GLYPHS[i % SCALE_GLYPHS.length] + " " + T.scaleLabel(scale)).join(" · ") +
        " — the large outlined marker is each method's chosen setting" : "", provisional ? P.NOTE : ""]
        .filter(Boolean).join(" · "));
      const [depth, width] = key.split("|");
      const title = (depth === "null" ? activation : "depth " + depth + (widthsOf().length > 1 ? " · width " + width : "")) + " · " + activation;
      if (!traces.length) { C.empty(div, title + ": no results yet"); continue; }
      const budget = [...new Set(groups.get(key).flatMap((c) => c.lrs.map((l) => l.lr)))].sort((a, b) => a - b);
      const xticks = budget.length <= 8 ? { tickvals: budget, ticktext: budget.map((v) => String(v)) } : C.logTicks(budget);
      C.draw(div, traces, layout(title, {
        xaxis: Object.assign({ type: "log", title: { text: "learning rate" } }, xticks),
        yaxis: { title: { text: "validation accuracy" }, range: [0, 1.02] },
      }));
    }
    pruneCharts(holder, keep);
    renderLegend(legend);
  }

  return { draw };
})();

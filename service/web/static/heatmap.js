// The study page's heatmaps: a method (lcw, bn_lcw) minus a baseline, one table per target, from
// the summary's comparisons. Color encodes the difference only where its 95% CI excludes 0 (on a
// scale set by those differences alone); a difference whose CI includes 0 is drawn neutral and
// hatched, its number still shown. The star follows the adjusted p. What a tooltip used to say
// alone is text in the cell: not testable (n < 6), diverged and early-stopped counts, and
// "provisional" while trials of the cell still run.
"use strict";

window.LCWHeatmap = (function () {
  const { el } = window.LCW;
  const { signed } = window.LCWCharts;
  const T = window.LCWTables;
  const P = window.LCWProvisional;

  // A table, not a plotly heatmap: the numbers are the point, it reads as text (screen readers,
  // copy and paste, ctrl-F), and the page then needs only plotly's basic bundle.
  const NEUTRAL = [244, 244, 241], NEG = [47, 99, 168], POS = [196, 81, 45];

  /** The cell's background for `value` on a diverging scale of +-zmax (blue below 0, red above). */
  function diverging(value, zmax) {
    const t = Math.max(-1, Math.min(1, value / zmax));
    const end = t < 0 ? NEG : POS, w = Math.abs(t);
    const rgb = NEUTRAL.map((n, i) => Math.round(n + (end[i] - n) * w));
    return { background: "rgb(" + rgb.join(",") + ")", dark: w > 0.55 };
  }

  /** The counts that stand beside a difference, as short lines of text. */
  function notes(summary, r, v, unfinished, stopped) {
    const out = [];
    const alpha = summary.adjustment ? summary.adjustment.alpha : 0.05;
    if (!v.testable) out.push(T.NOT_TESTABLE(T.minPairs(summary)));
    else if (v.faded) out.push("CI includes 0");
    // Why there is (or is not) a star: the adjusted p against alpha, in the cell.
    if (v.testable && r.p_adjusted !== null && r.p_adjusted !== undefined) {
      out.push("p adj " + T.fmtP(r.p_adjusted) + (v.significant ? " < " : " ≥ ") + alpha);
    }
    if (r.method_diverged || r.baseline_diverged) out.push("diverged " + (r.method_diverged || 0) + " / " + (r.baseline_diverged || 0));
    if (stopped) out.push("stopped early " + stopped);
    if (unfinished) out.push("provisional");
    return out;
  }

  /** The heatmap of `target` minus `baseline` (the comparisons `rows`): a depth x cell table
   * of differences, and its key. `order`: the page's byActivation and groupLabel. */
  function table(summary, target, baseline, rows, order) {
    const { byActivation, groupLabel } = order;
    const cols = [...new Set([...rows].sort((a, b) => byActivation(a.activation, b.activation) || (a.width || 0) - (b.width || 0))
      .map((r) => groupLabel(r.activation, r.width)))];
    const depths = [...new Set(rows.map((r) => r.depth))].sort((a, b) => (a || 0) - (b || 0));
    const at = new Map(rows.map((r) => [r.depth + "|" + groupLabel(r.activation, r.width), r]));
    // The scale: only differences drawn in color set it (a CI across 0 never saturates it).
    const colored = rows.filter((r) => r.mean_diff !== null && !T.verdict(r).faded);
    const zmax = Math.max(0.01, ...colored.map((r) => Math.abs(r.mean_diff)));
    const idx = P.index(summary);
    const stoppedAt = new Map(summary.cells.map((c) => [[c.method, c.depth, c.width, c.activation].join("|"), c.stopped_early || 0]));
    const stoppedOf = (r) => [r.method, r.baseline].reduce((n, m) => n + (stoppedAt.get([m, r.depth, r.width, r.activation].join("|")) || 0), 0);
    const adjName = T.adjustmentName(summary);
    const alpha = summary.adjustment ? summary.adjustment.alpha : 0.05;
    const head = el("tr", {}, el("th", { scope: "col", text: "" }), ...cols.map((c) => el("th", { scope: "col", text: c })));
    const body = depths.map((d) => el("tr", {},
      el("th", { scope: "row", text: d === null ? "fixed" : "depth " + d }),
      ...cols.map((col) => {
        const r = at.get(d + "|" + col);
        if (!r || r.mean_diff === null) return el("td", { class: "heat-none", text: "—" });
        const v = T.verdict(r); // the star follows the adjusted p, the color the CI
        const unfinished = P.ofComparison(idx, r);
        const shade = v.faded ? { background: "rgb(" + NEUTRAL.join(",") + ")", dark: false } : diverging(r.mean_diff, zmax);
        const p = r.p_value !== null ? T.fmtP(r.p_value) + " · p adj (" + adjName + ") " + T.fmtP(r.p_adjusted) +
          " · signed-rank " + T.fmtP(r.p_signed_rank) : (r.p_value_note || "—");
        const cell = el("td", {
          class: "heat" + (v.significant ? " heat-sig" : "") + (v.faded ? " heat-ns" : "") +
            (v.testable ? "" : " heat-untestable") + (shade.dark ? " heat-dark" : "") + (unfinished ? " heat-provisional" : ""),
          "data-depth": d === null ? "" : String(d), "data-activation": r.activation, "data-width": r.width === null ? "" : String(r.width),
          title: target + " − " + baseline + " · " + (d === null ? "fixed" : "depth " + d) + " · " + col +
            "\nΔ test acc " + signed(r.mean_diff, 3) + "\n95% CI " + T.fmtCI(r.ci95, r.ci95_note) +
            (v.faded ? " (includes 0)" : "") + "\np " + p + " · n=" + r.n +
            "\n" + T.settingLabel(r.method_lr, r.method_init_scale) + " vs " + T.settingLabel(r.baseline_lr, r.baseline_init_scale) +
            (unfinished ? "\n" + P.label(unfinished) : ""),
        }, el("span", { class: "heat-value", text: signed(r.mean_diff, 3) + (v.significant ? " *" : "") }));
        for (const line of notes(summary, r, v, unfinished, stoppedOf(r))) {
          cell.append(el("span", { class: "heat-note" + (line === "provisional" ? " prov" : ""), text: line }));
        }
        cell.style.backgroundColor = shade.background;
        return cell;
      })));
    const key = el("div", { class: "heat-scale" },
      el("span", { text: signed(-zmax, 3), "aria-hidden": "true" }), el("span", { class: "heat-bar", "aria-hidden": "true" }),
      el("span", { text: signed(zmax, 3), "aria-hidden": "true" }),
      el("span", { class: "heat-key", text: "color: only where the 95% CI excludes 0 · hatched grey: CI includes 0 · * p adj (" +
        adjName + ") < " + alpha + " · dashed outline: provisional (trials still running)" }));
    return [el("table", { class: "heatmap" }, el("thead", {}, head), el("tbody", {}, ...body)), key];
  }

  return { table };
})();

// The study page's result tables, from the summary (GET /api/studies/{id}/summary): the
// adjustment line, every cell at its chosen setting, every paired comparison, and the heatmap
// tables of a method minus a baseline (study.js places them).
"use strict";

window.LCWTables = (function () {
  const { el } = window.LCW;
  const ADJUSTMENTS = { holm: "Holm", bh: "Benjamini–Hochberg" };
  const TESTS = { paired_t: "paired t", signed_rank_exact: "exact signed-rank" };
  const NOT_TESTABLE = (minPairs) => "Not testable (n < " + minPairs + ")";

  const { fmt, signed } = window.LCWCharts;  // charts.js loads first (study.html)

  /** A p-value in two significant digits (scientific below 0.001). */
  function fmtP(p) {
    if (p === null || p === undefined) return "—";
    if (p === 0) return "0";
    return p < 0.001 ? p.toExponential(1) : String(Number(p.toPrecision(2)));
  }

  function fmtCI(ci, note) {
    return ci ? "[" + signed(ci[0]) + ", " + signed(ci[1]) + "]" : (note || "no CI");
  }

  /** "×0.5" for an init-std multiplier (nothing when the study has none). */
  function scaleLabel(scale) {
    return scale === null || scale === undefined ? "" : "×" + String(scale);
  }

  /** A setting as text: "lr 0.1 ×0.5" (or "lr 0.1" without an init scale). */
  function settingLabel(lr, scale) {
    if (lr === null || lr === undefined) return "—";
    const s = scaleLabel(scale);
    return "lr " + String(lr) + (s ? " " + s : "");
  }

  function minPairs(summary) {
    return summary.adjustment ? summary.adjustment.min_pairs : 6;
  }

  function adjustmentName(summary) {
    const a = summary.adjustment;
    return a ? (ADJUSTMENTS[a.method] || a.method) : "Holm";
  }

  /**
   * What a comparison shows: the star follows the adjusted p (`significant`), never the raw one;
   * a difference whose 95% CI includes 0 (or has none) is faded; below min_pairs paired seeds it
   * is not testable.
   */
  function verdict(r) {
    const ciZero = !r.ci95 || (r.ci95[0] <= 0 && r.ci95[1] >= 0);
    return { significant: r.significant === true, faded: ciZero, testable: r.testable !== false };
  }

  // -- the adjustment line ----------------------------------------------------------------------

  function adjustmentText(summary) {
    const a = summary.adjustment;
    if (!a) return "";
    const parts = [];
    if (a.family_size) {
      const sig = summary.comparisons.filter((c) => c.significant).length;
      parts.push("p adjusted by " + adjustmentName(summary) + " over " + a.family_size +
        " comparison" + (a.family_size === 1 ? "" : "s") + " (" + sig + " significant at p adj < " + a.alpha + ")");
    } else {
      parts.push("no comparison is testable yet: each needs at least " + a.min_pairs + " paired seeds");
    }
    parts.push("primary test: " + (TESTS[a.primary_test] || a.primary_test));
    const floor = a.signed_rank_floor_adjusted;
    if (floor !== null && floor !== undefined) {
      parts.push((TESTS[a.robustness_test] || a.robustness_test) + " floor after adjustment: " + fmtP(floor));
    }
    return parts.join("; ");
  }

  function renderAdjustment(node, summary) {
    const a = summary.adjustment;
    node.classList.toggle("hidden", !a);
    if (!a) { node.replaceChildren(); return; }
    node.replaceChildren(
      el("span", { class: "adj-facts", text: adjustmentText(summary) + "." }),
      a.note ? el("span", { class: "adj-note muted", text: " " + a.note }) : null,
    );
  }

  // -- cells at their chosen setting -------------------------------------------------------------

  function layoutLabel(depth, width) {
    return depth === null ? "—" : depth + " × " + width;
  }

  function num(text, col, extra) {
    return el("td", Object.assign({ class: "num", "data-col": col, text: text }, extra || {}));
  }

  function countCell(n, col, label) {
    return num(String(n || 0), col, { class: "num count-cell" + (n ? " nonzero" : ""), title: (n || 0) + " " + label });
  }

  function cellsTable(summary, order) {
    const cells = [...summary.cells].sort(order);
    const head = ["activation", "depth × width", "method", "best lr", "init scale", "val acc", "test acc",
      "95% CI", "n", "diverged", "stopped early"];
    const numeric = new Set(["depth × width", "best lr", "init scale", "val acc", "test acc", "n", "diverged", "stopped early"]);
    const rows = cells.map((c) => el("tr", {
      "data-method": c.method, "data-activation": c.activation,
      "data-depth": c.depth === null ? "" : String(c.depth), "data-width": c.width === null ? "" : String(c.width),
    },
    el("td", { "data-col": "activation", text: c.activation }),
    num(layoutLabel(c.depth, c.width), "layout"),
    el("td", { "data-col": "method", text: c.method }),
    num(c.best_lr === null ? "—" : String(c.best_lr), "best_lr"),
    num(c.best_init_scale === null || c.best_init_scale === undefined ? "—" : scaleLabel(c.best_init_scale), "best_init_scale"),
    num(fmt(c.val_acc_mean), "val_acc"),
    num(fmt(c.test_acc_mean), "test_acc"),
    num(fmtCI(c.test_acc_ci95, c.ci95_note), "ci95", { class: "num" + (c.test_acc_ci95 ? "" : " note") }),
    num(String(c.n), "n"),
    countCell(c.diverged, "diverged", "diverged trials (in the means: they ran the whole budget)"),
    countCell(c.stopped_early, "stopped_early", "early-stopped trials (not in the means)")));
    return el("table", { class: "table results-table cells-table" },
      el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col", class: numeric.has(h) ? "num" : null, text: h })))),
      el("tbody", {}, ...rows));
  }

  // -- paired comparisons ---------------------------------------------------------------------------

  function diffClass(r, v) {
    if (r.mean_diff === null) return "diff";
    if (v.faded) return "diff diff-ns";
    return "diff " + (r.mean_diff > 0 ? "diff-pos" : "diff-neg");
  }

  /** The p-value cells of a comparison row: raw, adjusted and signed-rank, or why there are none. */
  function pCells(summary, r, v) {
    if (!v.testable) {
      return [el("td", { class: "not-testable", colspan: "3", "data-col": "p", title: r.p_value_note || "", text: NOT_TESTABLE(minPairs(summary)) })];
    }
    if (r.p_value === null) {
      return [el("td", { class: "note", colspan: "3", "data-col": "p", text: r.p_value_note || "no p-value" })];
    }
    const rank = r.p_signed_rank === null ? "—"
      : fmtP(r.p_signed_rank) + (r.p_signed_rank_adjusted === null || r.p_signed_rank_adjusted === undefined ? "" : " (adj " + fmtP(r.p_signed_rank_adjusted) + ")");
    return [
      num(fmtP(r.p_value), "p_value"),
      num(fmtP(r.p_adjusted), "p_adjusted", { class: "num" + (v.significant ? " sig" : "") }),
      num(rank, "p_signed_rank"),
    ];
  }

  function comparisonRow(summary, r, cellLabel) {
    const v = verdict(r);
    const diff = el("td", { class: "num " + diffClass(r, v), "data-col": "mean_diff" }, signed(r.mean_diff));
    if (v.significant) diff.append(el("span", { class: "star", title: "p adj < " + (summary.adjustment || { alpha: 0.05 }).alpha, text: " *" }));
    return el("tr", {
      class: (v.significant ? "sig" : "") + (v.faded ? " ns" : "") + (v.testable ? "" : " untestable"),
      "data-method": r.method, "data-baseline": r.baseline, "data-activation": r.activation,
      "data-depth": r.depth === null ? "" : String(r.depth), "data-width": r.width === null ? "" : String(r.width),
    },
    el("td", { "data-col": "pair", text: r.method + " − " + r.baseline }),
    el("td", { "data-col": "cell", text: cellLabel(r) }),
    el("td", { "data-col": "settings", class: "small" },
      el("span", { class: "nowrap", text: settingLabel(r.method_lr, r.method_init_scale) }), " vs ",
      el("span", { class: "nowrap", text: settingLabel(r.baseline_lr, r.baseline_init_scale) })),
    num(String(r.n), "n"),
    diff,
    num(fmtCI(r.ci95, r.ci95_note), "ci95", { class: "num " + (v.faded ? "diff-ns" : "") + (r.ci95 ? "" : " note") }),
    ...pCells(summary, r, v),
    num((r.method_diverged || 0) + " / " + (r.baseline_diverged || 0), "diverged", { title: "diverged trials at each side's chosen setting" }));
  }

  function comparisonsTable(summary, order, cellLabel) {
    const rows = [...summary.comparisons].sort(order).map((r) => comparisonRow(summary, r, cellLabel));
    const head = [
      ["comparison", false], ["cell", false], ["settings", false], ["n", true], ["Δ test acc", true], ["95% CI", true],
      ["p (" + (TESTS[(summary.adjustment || {}).primary_test] || "paired t") + ")", true],
      ["p adj (" + adjustmentName(summary) + ")", true], ["p signed-rank", true], ["diverged", true],
    ];
    return el("table", { class: "table results-table comparisons-table" },
      el("thead", {}, el("tr", {}, ...head.map(([h, n]) => el("th", { scope: "col", class: n ? "num" : null, text: h })))),
      el("tbody", {}, ...rows));
  }

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

  /** The cell's background for a difference drawn as not significant (95% CI includes 0):
   * the same hue, a fifth of the saturation, never dark. */
  function faded(value, zmax) {
    const shade = diverging(value, zmax * 5);
    return { background: shade.background, dark: false };
  }

  /** The heatmap of `target` minus `baseline` (the comparisons `rows`): a depth x cell table
   * of colored differences, and its scale. `order`: the page's byActivation and groupLabel. */
  function heatmapTable(summary, target, baseline, rows, order) {
    const { byActivation, groupLabel } = order;
    const cols = [...new Set([...rows].sort((a, b) => byActivation(a.activation, b.activation) || (a.width || 0) - (b.width || 0))
      .map((r) => groupLabel(r.activation, r.width)))];
    const depths = [...new Set(rows.map((r) => r.depth))].sort((a, b) => (a || 0) - (b || 0));
    const at = new Map(rows.map((r) => [r.depth + "|" + groupLabel(r.activation, r.width), r]));
    const zmax = Math.max(0.01, ...rows.filter((r) => r.mean_diff !== null).map((r) => Math.abs(r.mean_diff)));
    const adjName = adjustmentName(summary);
    const head = el("tr", {}, el("th", { scope: "col", text: "" }), ...cols.map((c) => el("th", { scope: "col", text: c })));
    const body = depths.map((d) => el("tr", {},
      el("th", { scope: "row", text: d === null ? "fixed" : "depth " + d }),
      ...cols.map((col) => {
        const r = at.get(d + "|" + col);
        if (!r || r.mean_diff === null) return el("td", { class: "heat-none", text: "—" });
        const v = verdict(r); // the star follows the adjusted p, the fading the CI
        const shade = v.faded ? faded(r.mean_diff, zmax) : diverging(r.mean_diff, zmax);
        const p = r.p_value !== null ? fmtP(r.p_value) + " · p adj (" + adjName + ") " + fmtP(r.p_adjusted) +
          " · signed-rank " + fmtP(r.p_signed_rank) : (r.p_value_note || "—");
        const cell = el("td", {
          class: "heat" + (v.significant ? " heat-sig" : "") + (v.faded ? " heat-ns" : "") +
            (v.testable ? "" : " heat-untestable") + (shade.dark ? " heat-dark" : ""),
          "data-depth": d === null ? "" : String(d), "data-activation": r.activation,
          title: target + " − " + baseline + " · " + (d === null ? "fixed" : "depth " + d) + " · " + col +
            "\nΔ test acc " + signed(r.mean_diff, 3) + "\n95% CI " + fmtCI(r.ci95, r.ci95_note) +
            (v.faded ? " (includes 0)" : "") + "\np " + p + " · n=" + r.n +
            "\n" + settingLabel(r.method_lr, r.method_init_scale) + " vs " + settingLabel(r.baseline_lr, r.baseline_init_scale),
        }, el("span", { class: "heat-value", text: signed(r.mean_diff, 3) + (v.significant ? " *" : "") }));
        if (!v.testable) cell.append(el("span", { class: "heat-note", text: NOT_TESTABLE(minPairs(summary)) }));
        cell.style.background = shade.background;
        return cell;
      })));
    const scale = el("div", { class: "heat-scale", "aria-hidden": "true" },
      el("span", { text: signed(-zmax, 3) }), el("span", { class: "heat-bar" }), el("span", { text: signed(zmax, 3) }),
      el("span", { class: "heat-key", text: "* p adj (" + adjName + ") < " + (summary.adjustment ? summary.adjustment.alpha : 0.05) +
        " · faded: 95% CI includes 0" }));
    return [el("table", { class: "heatmap" }, el("thead", {}, head), el("tbody", {}, ...body)), scale];
  }

  return {
    verdict, fmtP, fmtCI, scaleLabel, settingLabel, minPairs, adjustmentName, NOT_TESTABLE,
    renderAdjustment, cellsTable, comparisonsTable, heatmapTable,
  };
})();

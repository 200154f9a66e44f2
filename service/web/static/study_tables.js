// The study page's result tables, from the summary (GET /api/studies/{id}/summary): the
// adjustment line, every cell at its chosen setting, every paired comparison (study.js places
// them; heatmap.js draws the heatmaps).
"use strict";

window.LCWTables = (function () {
  const { el } = window.LCW;
  const ADJUSTMENTS = { holm: "Holm", bh: "Benjamini–Hochberg" };
  const TESTS = { paired_t: "paired t", signed_rank_exact: "exact signed-rank" };
  const NOT_TESTABLE = (minPairs) => "Not testable (n < " + minPairs + ")";

  const { fmt, signed } = window.LCWCharts;  // charts.js loads first (study.html)
  const P = window.LCWProvisional;  // and provisional.js

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

  function num(text, col, extra, ...children) {
    return el("td", Object.assign({ class: "num", "data-col": col, text: text }, extra || {}), ...children);
  }

  /** The visible "provisional" mark beside a number whose cell still has trials to run. */
  function provisionalMark(unfinished) {
    return el("span", { class: "prov-mark", title: P.label(unfinished), text: " provisional" });
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
      class: P.unfinished(c) ? "provisional" : null,
      "data-method": c.method, "data-activation": c.activation,
      "data-depth": c.depth === null ? "" : String(c.depth), "data-width": c.width === null ? "" : String(c.width),
    },
    el("td", { "data-col": "activation", text: c.activation }),
    num(layoutLabel(c.depth, c.width), "layout"),
    el("td", { "data-col": "method", text: c.method }),
    num(c.best_lr === null ? "—" : String(c.best_lr), "best_lr"),
    num(c.best_init_scale === null || c.best_init_scale === undefined ? "—" : scaleLabel(c.best_init_scale), "best_init_scale"),
    num(fmt(c.val_acc_mean), "val_acc"),
    num(fmt(c.test_acc_mean), "test_acc", {}, P.unfinished(c) ? provisionalMark(P.unfinished(c)) : null),
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

  function comparisonRow(summary, r, cellLabel, unfinished) {
    const v = verdict(r);
    const diff = el("td", { class: "num " + diffClass(r, v), "data-col": "mean_diff" }, signed(r.mean_diff));
    if (v.significant) diff.append(el("span", { class: "star", title: "p adj < " + (summary.adjustment || { alpha: 0.05 }).alpha, text: " *" }));
    if (unfinished) diff.append(provisionalMark(unfinished));
    return el("tr", {
      class: (v.significant ? "sig" : "") + (v.faded ? " ns" : "") + (v.testable ? "" : " untestable") + (unfinished ? " provisional" : ""),
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
    const idx = P.index(summary);
    const rows = [...summary.comparisons].sort(order).map((r) => comparisonRow(summary, r, cellLabel, P.ofComparison(idx, r)));
    const head = [
      ["comparison", false], ["cell", false], ["settings", false], ["n", true], ["Δ test acc", true], ["95% CI", true],
      ["p (" + (TESTS[(summary.adjustment || {}).primary_test] || "paired t") + ")", true],
      ["p adj (" + adjustmentName(summary) + ")", true], ["p signed-rank", true], ["diverged", true],
    ];
    return el("table", { class: "table results-table comparisons-table" },
      el("thead", {}, el("tr", {}, ...head.map(([h, n]) => el("th", { scope: "col", class: n ? "num" : null, text: h })))),
      el("tbody", {}, ...rows));
  }

  return {
    verdict, fmtP, fmtCI, scaleLabel, settingLabel, minPairs, adjustmentName, NOT_TESTABLE, provisionalMark,
    renderAdjustment, cellsTable, comparisonsTable,
  };
})();

// Provisional numbers: a cell of the summary with pending or running trials (LRSummary.unfinished)
// may still change (its chosen setting, its means, its comparisons), so every chart and table
// that shows it says so. Read from the summary the page already holds (GET .../summary).
"use strict";

window.LCWProvisional = (function () {
  const cellKey = (c) => [c.method, c.depth, c.width, c.activation].join("|");

  /** Trials still pending or running in one method's cell of the summary. */
  function unfinished(cell) {
    return cell ? cell.lrs.reduce((n, l) => n + (l.unfinished || 0), 0) : 0;
  }

  /** method|depth|width|activation -> unfinished trials, for the whole summary. */
  function index(summary) {
    const out = new Map();
    for (const c of summary.cells) out.set(cellKey(c), unfinished(c));
    return out;
  }

  /** Unfinished trials behind a comparison (its method's and its baseline's cells). */
  function ofComparison(idx, r) {
    const at = (m) => idx.get([m, r.depth, r.width, r.activation].join("|")) || 0;
    return at(r.method) + at(r.baseline);
  }

  /** Unfinished trials of one (lr, init scale) setting of a cell. */
  function ofSetting(l) {
    return l.unfinished || 0;
  }

  /** Unfinished trials of every method in a depth x width x activation cell. */
  function ofCell(summary, depth, width, activation) {
    return summary.cells.filter((c) => c.depth === depth && c.width === width && c.activation === activation)
      .reduce((n, c) => n + unfinished(c), 0);
  }

  function label(n) {
    return "provisional: " + n + " trial" + (n === 1 ? "" : "s") + " still to run";
  }

  // The line under a chart that has open (provisional) markers.
  const NOTE = "open markers: provisional, trials of that point still run";

  return { unfinished, index, ofComparison, ofSetting, ofCell, label, NOTE };
})();

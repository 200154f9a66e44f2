// A trial's page: loss and accuracy per epoch, per-layer diagnostics at init and the last epoch.
"use strict";

(function () {
  const { data } = window.LCW;
  const C = window.LCWCharts;
  const metrics = data("trial-metrics") || [];
  const meta = data("trial-meta");
  if (!metrics.length) return;
  const epochs = metrics.map((m) => m.epoch);
  const series = (key, name, dash, col) => ({
    type: "scatter", mode: "lines+markers", name: name, x: epochs, y: metrics.map((m) => m[key]),
    line: { color: col, width: 2, dash: dash }, marker: { color: col, size: 5 },
    hovertemplate: name + " · epoch %{x}: %{y:.4f}<extra></extra>",
  });
  const ink = meta.color;
  const epochAxis = epochs[epochs.length - 1] <= 12 ? { title: { text: "epoch" }, dtick: 1 } : { title: { text: "epoch" } };
  const grey = "#8b9096";
  C.draw(document.getElementById("chart-loss"), [
    series("train_loss", "train", "solid", ink), series("val_loss", "val", "dot", grey),
    series("test_loss", "test", "dash", "#1d2125"),
  ], C.layout("Loss", { xaxis: epochAxis, yaxis: Object.assign({ title: { text: "loss (log)" }, type: "log" },
    C.logTicks(metrics.flatMap((m) => [m.train_loss, m.val_loss, m.test_loss]))) }));
  C.draw(document.getElementById("chart-acc"), [
    series("train_acc", "train", "solid", ink), series("val_acc", "val", "dot", grey),
    series("test_acc", "test", "dash", "#1d2125"),
  ], C.layout("Accuracy", { xaxis: epochAxis, yaxis: { title: { text: "accuracy" }, rangemode: "tozero" } }));

  const withDiag = metrics.filter((m) => m.diagnostics && (m.diagnostics.layers || []).length);
  const shiftDiv = document.getElementById("chart-shift");
  const gradDiv = document.getElementById("chart-grad");
  if (!withDiag.length) {
    const why = meta.diagnostics === false
      ? "Diagnostics are off for this trial (diagnostics: false in its study's spec): activation shift and gradient norms were not measured."
      : "Not measured yet: no epoch of this trial has recorded diagnostics.";
    C.empty(shiftDiv, why);
    C.empty(gradDiv, why);
    return;
  }
  const first = withDiag[0];
  const last = withDiag[withDiag.length - 1];
  const phases = first === last ? [[first, "epoch " + first.epoch, "solid"]]
    : [[first, first.epoch === 0 ? "init" : "epoch " + first.epoch, "dot"], [last, "epoch " + last.epoch, "solid"]];
  const diagTraces = (key) => phases.map(([m, label, dash]) => {
    const layers = m.diagnostics.layers;
    return {
      type: "scatter", mode: "lines+markers", name: label, x: layers.map((l, i) => (Number.isInteger(l.layer) ? l.layer : i + 1)),
      y: layers.map((l) => l[key]), line: { color: ink, width: dash === "dot" ? 1.6 : 2.4, dash: dash },
      marker: { color: ink, size: 5, symbol: dash === "dot" ? "circle-open" : "circle" },
      hovertemplate: label + " · layer %{x}: %{y:.3g}<extra></extra>",
    };
  });
  C.draw(shiftDiv, diagTraces("shift"), C.layout("Activation shift per layer", {
    xaxis: { title: { text: "layer" } }, yaxis: Object.assign({ title: { text: "shift (log)" }, type: "log" },
      C.logTicks(phases.flatMap(([m]) => m.diagnostics.layers.map((l) => l.shift)))),
  }));
  C.draw(gradDiv, diagTraces("grad_norm"), C.layout("Gradient norm per layer", {
    xaxis: { title: { text: "layer" } }, yaxis: Object.assign({ title: { text: "‖∇W‖ (log)" }, type: "log" },
      C.logTicks(phases.flatMap(([m]) => m.diagnostics.layers.map((l) => l.grad_norm)))),
  }));
})();

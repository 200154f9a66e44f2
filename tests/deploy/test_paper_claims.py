"""The claims table's rules (examples/paper/claims.py) on made-up saved results: one Holm family
over the table's rows, and verdicts that follow the claimed direction."""

from __future__ import annotations

from typing import Any

from examples.paper import claims
from service.significance import adjust, compare

SEEDS = range(6)


def _cell(method: str, depth: int, acc: float) -> dict[str, Any]:
    return {"method": method, "depth": depth, "test_acc_mean": acc, "best_lr": 0.1,
            "best_init_scale": 1.0}  # fmt: skip


def _study(method: str, baseline: str, diffs: dict[int, list[float]]) -> dict[str, Any]:
    cells, comparisons = [], []
    for depth, d in diffs.items():
        c = compare([0.5 + x for x in d], [0.5] * len(d))
        cells += [_cell(method, depth, 0.5 + sum(d) / len(d)), _cell(baseline, depth, 0.5)]
        comparisons.append({"method": method, "baseline": baseline, "depth": depth, **c})
    return {"trials": 2 * 6 * len(diffs), "summary": {"cells": cells,
            "comparisons": comparisons}}  # fmt: skip


def _saved() -> dict[str, Any]:
    shift = [
        {"method": m, "depth": 20, "seed": s,
         "shift": [1.0, 50.0 + s] if m == "plain" else [1.0, 0.5 + 0.01 * s]}
        for m in ("plain", "lcw") for s in SEEDS
    ]  # fmt: skip
    return {
        "date": "2026-12-03", "machine": "test", "wall_s": 60.0,
        "studies": {
            "shift": {"trials": 12, "init_shift": shift},
            # depth 20: lcw clearly better; depth 50: clearly worse; depth 100: noise.
            "deep-sigmoid": _study("lcw", "plain", {
                20: [0.30, 0.31, 0.29, 0.32, 0.30, 0.31],
                50: [-0.20, -0.21, -0.19, -0.22, -0.20, -0.21],
                100: [0.01, -0.02, 0.03, -0.01, 0.00, -0.01],
            }),
            "bn-lcw": _study("bn_lcw", "bn", {20: [0.010, 0.012, 0.011, 0.009, 0.010, 0.013]}),
        },
    }  # fmt: skip


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| claim")]  # fmt: skip


def test_verdicts_follow_the_claimed_direction_after_one_holm_family() -> None:
    saved = _saved()
    rows = _rows(claims.render(saved))
    verdicts = [r[-1] for r in rows]
    # shift d20, deep d20 / d50 / d100, bn d20, the VGG row
    assert verdicts == ["supported", "supported", "contradicted", "not shown", "supported",
                        "not run here"]  # fmt: skip
    raw = [claims._shift_rows(saved["studies"]["shift"])[0]["p"]]
    raw += [c["p_value"] for k in ("deep-sigmoid", "bn-lcw")
            for c in saved["studies"][k]["summary"]["comparisons"]]  # fmt: skip
    expected = adjust(raw, "holm")
    shown = [r[3] for r in rows[:-1]]
    assert shown == ["<0.001" if p < 0.001 else f"{p:.3f}" for p in expected]
    assert "Holm over the table's 5 rows" in claims.render(saved)

"""`lcw-sweep train` through the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "lcw-sweep"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "train", *args], capture_output=True, text=True, timeout=300)


def test_train_json_prints_one_object() -> None:
    proc = _run("--dataset", "digits", "--depth", "3", "--epochs", "2", "--method", "lcw",
                "--lr", "0.1", "--seed", "0", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed"
    assert {"test_acc", "val_acc", "train_loss", "epochs"} <= set(out)
    assert [e["epoch"] for e in out["epochs"]] == [0, 1, 2]


def test_train_table_output() -> None:
    proc = _run("--dataset", "digits", "--depth", "2", "--epochs", "1", "--no-diagnostics")
    assert proc.returncode == 0, proc.stderr
    assert "test acc" in proc.stdout and "status: completed" in proc.stdout


def test_bad_method_exits_2_naming_the_allowed_values() -> None:
    proc = _run("--method", "magic")
    assert proc.returncode == 2
    assert "--method" in proc.stderr and "'lcw'" in proc.stderr and "magic" in proc.stderr


def test_incompatible_model_and_dataset_exits_2() -> None:
    proc = _run("--model", "vgg11", "--dataset", "digits")
    assert proc.returncode == 2
    assert "--model" in proc.stderr and "digits" in proc.stderr

"""`lcw-sweep data list | fetch | verify` as a user runs them, against a real local HTTP mirror
of small files in the real formats (their digests substituted through LCW_DATASET_CHECKSUMS);
and a real `lcw-sweep serve` whose data directory lacks mnist: GET /api/datasets says so, and a
study on mnist fails once, at the dispatcher's check, with the message and fix that
GET /api/studies/{id} (its trials) and `lcw-sweep status ID` show."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli_helpers import clean_env, lcw, serve, study_spec
from dataset_mirror import IDX_FILES, Published, publish, serving
from testkit import wait_until

FINISHED = ("failed", "completed", "cancelled")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Published, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("data-cli")
    pub = publish(tmp).on_mirror(tmp / "checksums-served.json")
    with serving(pub.mirror) as served:
        env = clean_env(
            LCW_DATASET_MIRROR=served.url,
            LCW_DATASET_CHECKSUMS=str(pub.checksums),
            LCW_CACHE_DIR=str(tmp / "cache"),
            LCW_DATA_DIR=str(tmp / "unused"),
        )
        yield pub, env


def test_fetch_list_verify_and_repair(
    mirror: tuple[Published, dict[str, str]], tmp_path: Path
) -> None:
    pub, env = mirror
    data = tmp_path / "data"
    listed = lcw("data", "list", "--dir", str(data), env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["mnist"][1:4] == ["files", str(data / "mnist"), "missing"]
    assert rows["digits"][1] == "shipped" and rows["digits"][-1] == "shipped"

    fetched = lcw("data", "fetch", "mnist", "cifar10", "--dir", str(data), env=env)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert f"mnist: 4 files verified in {data / 'mnist'}" in fetched.stdout
    assert f"cifar10: 6 files verified in {data / 'cifar10'}" in fetched.stdout
    for name in IDX_FILES:  # a progress line per file, ending at 100%
        assert f"{name}: 100% of" in fetched.stderr, fetched.stderr
    assert "cifar-10-python.tar.gz: 100% of" in fetched.stderr
    served = {path for path, _ in pub.mirror.requests}
    assert served == {f"/mnist/{n}" for n in IDX_FILES} | {"/cifar10/cifar-10-python.tar.gz"}

    listed = lcw("data", "list", "--dir", str(data), env=env)
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["mnist"][3] == "present" and rows["cifar10"][3] == "present"
    assert rows["fashion_mnist"][3] == "missing"
    size = sum((data / "mnist" / n).stat().st_size for n in IDX_FILES)
    assert rows["mnist"][4:] == [f"{size / 1e6:.1f}", "MB"], (size, rows["mnist"])

    verified = lcw("data", "verify", "--dir", str(data), env=env)
    assert verified.returncode == 0, verified.stdout  # missing sets are not errors unnamed
    assert "mnist: present" in verified.stdout and "train-images-idx3-ubyte.gz: verified" in (
        verified.stdout
    )

    # A damaged file: same length, other bytes. list (structure only) may not see it; verify does.
    victim = data / "mnist" / "train-images-idx3-ubyte.gz"
    raw = bytearray(victim.read_bytes())
    raw[-100] ^= 0xFF  # inside the deflate data, far from the header and the trailer
    victim.write_bytes(bytes(raw))
    expected = json.loads(pub.checksums.read_text())["mnist"][victim.name]["md5"]
    bad = lcw("data", "verify", "mnist", "--dir", str(data), env=env)
    assert bad.returncode == 1
    assert f"checksum mismatch: expected md5 {expected}, found" in bad.stdout
    assert str(victim) in bad.stdout and "fix: lcw-sweep data fetch mnist" in bad.stdout

    # A truncated file: list sees it from its structure.
    victim.write_bytes(bytes(raw[: len(raw) // 2]))
    listed = lcw("data", "list", "--dir", str(data), env=env)
    assert listed.stdout.split("mnist ", 1)[1].split()[2] == "corrupt", listed.stdout

    before = len(pub.mirror.requests)
    repaired = lcw("data", "fetch", "mnist", "--dir", str(data), env=env)
    assert repaired.returncode == 0, repaired.stderr
    assert pub.mirror.requests[before:] == [(f"/mnist/{victim.name}", None)]  # only that file
    assert lcw("data", "verify", "mnist", "--dir", str(data), env=env).returncode == 0


def test_fetch_errors_name_what_was_wrong(
    mirror: tuple[Published, dict[str, str]], tmp_path: Path
) -> None:
    pub, env = mirror
    wrong = json.loads(pub.checksums.read_text())
    wrong["mnist"]["train-labels-idx1-ubyte.gz"]["sha256"] = "a" * 64
    checksums = tmp_path / "wrong.json"
    checksums.write_text(json.dumps(wrong))
    proc = lcw("data", "fetch", "mnist", "--dir", str(tmp_path / "d"),
               env={**env, "LCW_DATASET_CHECKSUMS": str(checksums)})  # fmt: skip
    assert proc.returncode == 1
    assert "train-labels-idx1-ubyte.gz from http://127.0.0.1:" in proc.stderr
    assert f"expected sha256 {'a' * 64}, found " in proc.stderr
    assert not (tmp_path / "d" / "mnist" / "train-labels-idx1-ubyte.gz").exists()

    shipped = lcw("data", "fetch", "digits", "--dir", str(tmp_path / "d"), env=env)
    assert shipped.returncode == 1 and "ships with lcw-sweep, nothing to fetch" in shipped.stderr
    unknown = lcw("data", "verify", "imagenet", env=env)
    assert unknown.returncode == 1 and "'imagenet' is not one of" in unknown.stderr


@pytest.mark.slow
def test_a_study_on_a_missing_dataset_fails_at_the_dispatchers_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    spec = study_spec("no files", dataset="mnist", depths=[1], widths=[8], seeds=2, epochs=1,
                      diagnostics=False, max_retries=3)  # fmt: skip
    with (
        serve(tmp_path, LCW_DATA_DIR=str(data)) as (url, started),
        httpx.Client(base_url=url, timeout=30) as api,
    ):
        listed = api.get("/api/datasets").json()
        by_name = {d["name"]: d for d in listed["data"]}
        assert listed["count"] == 7 and by_name["digits"]["state"] == "shipped"
        mnist = by_name["mnist"]
        assert mnist["state"] == "missing" and mnist["folder"] == str(data / "mnist")
        assert mnist["fix"] == "lcw-sweep data fetch mnist"
        assert [f["state"] for f in mnist["files"]] == ["missing"] * 4

        sid = api.post("/api/studies", json=spec).json()["id"]

        def finished() -> bool:
            return api.get(f"/api/studies/{sid}").json()["status"] in FINISHED

        wait_until(finished, timeout=120, interval=0.2, what=f"study {sid} to finish")
        study = api.get(f"/api/studies/{sid}").json()
        assert study["status"] == "failed", study
        assert study["progress"]["failed"] == study["progress"]["total"] == 4
        trials = api.get(f"/api/studies/{sid}/trials").json()["data"]
        errors = {t["error"] for t in trials}
        assert len(errors) == 1  # one message for the whole study, from one check
        (error,) = errors
        assert study["last_error"] == error  # the study itself says why it failed
        assert error.startswith("DatasetNotFoundError: dataset 'mnist': missing ")
        assert "checked by the dispatcher before the study's trials ran" in error
        assert all(t["attempt"] <= 1 for t in trials)  # no retry, though max_retries is 3
        for t in trials:  # none reached an actor: no run info, no epoch
            detail = api.get(f"/api/trials/{t['id']}").json()
            assert detail["run_info"] is None and detail["metrics"] == []
        assert "study 1 fails before its trials ran" in started.log("serve")

        status = lcw("status", str(sid), "--url", url)
        assert status.returncode == 0, status.stderr
        out = " ".join(status.stdout.split())  # rich wraps long lines
        assert "4 of 4 trials failed (every trial)" in out
        assert "DatasetNotFoundError: dataset 'mnist': missing" in out
        assert "checked by the dispatcher before the study's trials ran" in out
        assert "fix: put the dataset's files in the workers' data directory" in out
        assert "lcw-sweep data fetch" in out and f"lcw-sweep retry {sid}" in out

"""`lcw-sweep data list | fetch | verify` as a user runs them, against a real local HTTP mirror
of small files in the real formats (their digests substituted through LCW_DATASET_CHECKSUMS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import clean_env, lcw
from dataset_mirror import IDX_FILES, Published, publish, serving


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

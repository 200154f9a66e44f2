"""The CLI's finish: --format json on every command that changes a study, --version, delete,
URLs without a scheme, "did you mean", spec-file errors with line and column, and a server
that dies under `submit --wait`.

A real `lcw-sweep serve --no-worker` (SQLite, no Ray: studies stay queued) for the module, and
for the outage test a server of its own that the test kills with SIGKILL and starts again.
The CLI runs as the installed console script.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from cli_helpers import BIN, REPO, clean_env, lcw, serve, study_spec, wait_healthy

from service.client import POLL_TIMEOUT_S, Client, ClientError, ServerUnreachableError

TINY = study_spec("polish", depths=[2], widths=[16], seeds=2, epochs=2, diagnostics=False)


def _write(tmp: Path, name: str, spec: dict[str, object]) -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("serve-polish"), extra_args=("--no-worker",)) as (u, _):
        yield u


def _json(*args: str) -> dict[str, object]:
    proc = lcw(*args)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)  # stdout holds the JSON and nothing else
    return data


def test_version_is_the_installed_one() -> None:
    proc = lcw("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"lcw-sweep {version('lcw-sweep')}\n"


def test_every_write_prints_json_with_format_json(url: str, tmp_path: Path) -> None:
    spec = _write(tmp_path, "tiny.yaml", TINY)
    study = _json("submit", str(spec), "--format", "json", "--url", url)
    sid = str(study["id"])
    assert study["status"] == "queued" and study["trial_count"] == 4

    shown = _json("status", sid, "-f", "json", "--url", url)
    assert shown["id"] == study["id"] and shown["status"] == "queued"
    listing = _json("status", "-f", "json", "--url", url)
    assert study["id"] in [s["id"] for s in listing["data"]]  # type: ignore[attr-defined]

    extended = _json("extend", sid, "--seeds", "3", "-f", "json", "--url", url)
    assert extended["added_trials"] == 2 and extended["trial_count"] == 6

    cancelled = _json("cancel", sid, "--format", "json", "--url", url)
    assert cancelled["status"] == "cancelled"
    assert cancelled["progress"]["cancelled"] == 6  # type: ignore[index]

    retried = _json("retry", sid, "--format", "json", "--url", url)
    assert retried["requeued_trials"] == 6 and retried["status"] == "queued"

    # --json: the older spelling, still the same JSON, with a note on stderr.
    old = lcw("status", sid, "--json", "--url", url)
    assert old.returncode == 0 and json.loads(old.stdout)["id"] == study["id"]
    assert "--format json" in old.stderr

    # The text forms stay for people.
    text = lcw("cancel", sid, "--url", url)
    assert text.stdout.startswith(f"study {sid} cancelled: 6 trials cancelled")


def test_status_wait_follows_a_submitted_study_to_its_end(url: str, tmp_path: Path) -> None:
    sid = int(
        _json("submit", str(_write(tmp_path, "t.yaml", TINY)), "-f", "json", "--url", url)["id"]
    )
    following = subprocess.Popen(
        [str(BIN / "lcw-sweep"), "status", str(sid), "--wait", "--poll", "0.3", "--url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=REPO,
    )
    try:
        time.sleep(1.5)
        assert following.poll() is None  # queued: still following
        with Client(url) as api:
            api.cancel(sid)
        out, err = following.communicate(timeout=30)
    finally:
        if following.poll() is None:
            following.kill()
            following.wait(10)
    assert following.returncode == 1, err  # it ended, but not completed
    assert f"study {sid} cancelled" in out
    no_id = lcw("status", "--wait", "--url", url)
    assert no_id.returncode == 2 and "--wait follows one study: give its id" in no_id.stderr


def test_delete_asks_first_then_deletes(url: str, tmp_path: Path) -> None:
    spec = _write(tmp_path, "tiny.yaml", TINY)
    sid = str(_json("submit", str(spec), "-f", "json", "--url", url)["id"])
    assert lcw("cancel", sid, "--url", url).returncode == 0

    refused = subprocess.run(
        [str(BIN / "lcw-sweep"), "delete", sid, "--url", url],
        input="n\n",
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=REPO,
        timeout=60,
    )
    assert refused.returncode == 1
    assert f"Delete study {sid} (polish: 4 trials, cancelled)" in refused.stderr
    assert lcw("status", sid, "--url", url).returncode == 0  # still there

    deleted = lcw("delete", sid, "--yes", "--url", url)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted study {sid} (polish, 4 trials)"
    gone = lcw("status", sid, "--url", url)
    assert gone.returncode == 1
    assert gone.stderr.splitlines() == [f"error: 404 study {sid} does not exist"]

    # A queued study cannot be deleted: the API's 409 as one line.
    queued = str(_json("submit", str(spec), "-f", "json", "--url", url)["id"])
    proc = lcw("delete", queued, "-y", "--format", "json", "--url", url)
    assert proc.returncode == 1 and proc.stderr.startswith("error: 409 ")


def test_a_url_without_a_scheme_means_http(url: str) -> None:
    bare = url.removeprefix("http://")
    proc = lcw("status", "--url", bare)
    assert proc.returncode == 0, proc.stderr
    assert "Studies (" in proc.stdout or "no studies yet" in proc.stdout
    with Client(bare) as api:
        assert api.url == url and api.health().status == "ok"

    wrong = lcw("status", "--url", "ftp://127.0.0.1:1")
    assert wrong.returncode == 1
    assert wrong.stderr.splitlines() == [
        "error: --url 'ftp://127.0.0.1:1': give the server as http(s)://HOST:PORT "
        "(e.g. http://127.0.0.1:8000)"
    ]


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"methods": ["plain", "lwc"]}, "methods[1]: 'lwc' is not one of"),
        ({"activations": ["tanhh"]}, "activations[0]: 'tanhh' is not one of"),
        ({"dataset": "digit"}, "dataset: 'digit' is not one of"),
        ({"learning_rate": [0.1]}, "learning_rate: unknown field (not part of the spec)"),
    ],
)
def test_a_misspelt_name_says_did_you_mean(
    url: str, tmp_path: Path, change: dict[str, object], said: str
) -> None:
    spec = {**TINY, **change}
    proc = lcw("submit", str(_write(tmp_path, "typo.yaml", spec)), "--url", url)
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    closest = {"methods": "lcw", "activations": "tanh", "dataset": "digits"}
    expected = closest.get(next(iter(change)), "learning_rates")
    assert line.startswith(f"error: 422 {said}"), line
    assert line.endswith(f"(did you mean '{expected}'?)"), line


def test_extend_with_a_misspelt_method_says_did_you_mean(url: str, tmp_path: Path) -> None:
    sid = str(
        _json("submit", str(_write(tmp_path, "t.yaml", TINY)), "-f", "json", "--url", url)["id"]
    )
    proc = lcw("extend", sid, "--method", "bn_lwc", "--url", url)
    assert proc.returncode == 1
    assert "did you mean 'bn_lcw'?" in proc.stderr, proc.stderr


def test_a_spec_file_that_does_not_parse_names_file_line_and_column(
    url: str, tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ndataset: digits\n  methods: [lcw]\n")
    with Client(url) as api:
        before = api.studies().count
    proc = lcw("submit", str(path), "--url", url)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: {path}, line 3, column 10: mapping values are not allowed here"
    ]
    as_json = tmp_path / "broken.json"
    as_json.write_text('{"name": "broken",\n  "methods": [}')
    proc = lcw("submit", str(as_json), "--url", url)
    assert proc.stderr.splitlines() == [f"error: {as_json}, line 2, column 15: Expecting value"]
    with Client(url) as api:
        assert api.studies().count == before  # nothing was sent


def test_as_dataframe_names_the_extra_when_pandas_is_missing(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = int(
        _json("submit", str(_write(tmp_path, "t.yaml", TINY)), "-f", "json", "--url", url)["id"]
    )
    with Client(url) as api:
        frame = api.results(sid, per="trial", as_dataframe=True)  # pandas is a dev dependency
        assert len(frame) == 4 and "id" in frame.columns and "index" not in frame.columns
        monkeypatch.setitem(sys.modules, "pandas", None)  # what `import pandas` sees without it
        with pytest.raises(ClientError) as info:
            api.results(sid, per="trial", as_dataframe=True)
        assert "pip install 'lcw-sweep[dataframe]'" in str(info.value)
        assert len(api.results(sid, per="trial")) == 4  # rows need no pandas


# -- the server dies under submit --wait --------------------------------------------------------


def _read_until(proc: subprocess.Popen[str], needle: str, *, timeout: float) -> tuple[str, float]:
    """Read the process's stderr until a line holds `needle`: (what was read, when)."""
    assert proc.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not selector.select(timeout=0.2):
            continue
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen, time.monotonic()
    raise AssertionError(f"no {needle!r} on stderr within {timeout} s; got:\n{seen}")


def test_a_server_killed_during_wait_is_reported_within_seconds(tmp_path: Path) -> None:
    spec = _write(tmp_path, "tiny.yaml", TINY)
    with serve(tmp_path, extra_args=("--no-worker",)) as (url, started):
        server = started.procs[0]
        waiting = subprocess.Popen(
            [str(BIN / "lcw-sweep"), "submit", str(spec), "--wait", "--poll", "0.5", "--url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            cwd=REPO,
        )
        try:
            assert waiting.stdout is not None
            first = waiting.stdout.readline()  # "submitted study N (polish): 4 trials, ..."
            assert first.startswith("submitted study "), first
            study_id = int(first.split()[2])
            time.sleep(1.0)  # a few polls answered

            os.kill(server.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            server.wait(10)
            seen, warned_at = _read_until(waiting, "stopped answering", timeout=15)
            assert warned_at - killed_at < 6.0, warned_at - killed_at
            print(f"server killed: the CLI warned {warned_at - killed_at:.2f} s later")
            warning = seen.strip().splitlines()[-1]
            assert warning.startswith(f"warning: the server at {url} stopped answering")
            assert f"Study {study_id} keeps its state on the server" in warning
            assert f"`lcw-sweep status {study_id} --wait`" in warning
            assert waiting.poll() is None  # still trying

            # The same server comes back: the wait goes on and sees the study end.
            port = url.rsplit(":", 1)[1]
            env = clean_env(LCW_DATABASE_URL=f"sqlite:///{tmp_path / 'lcw.db'}")
            again = started.start(
                ["lcw-sweep", "serve", "--no-worker", "--port", port], env=env, name="serve-again"
            )
            wait_healthy(url, again)
            _read_until(waiting, "answers again", timeout=15)
            with Client(url) as api:
                api.cancel(study_id)
            out, err = waiting.communicate(timeout=30)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait(10)
        assert waiting.returncode == 1, err  # cancelled, not completed
        assert f"study {study_id} cancelled" in out


def test_wait_gives_up_after_the_outage_naming_the_study(tmp_path: Path) -> None:
    with serve(tmp_path, extra_args=("--no-worker",)) as (own_url, started), Client(own_url) as api:
        study = api.submit(_write(tmp_path, "tiny.yaml", TINY))
        os.kill(started.procs[0].pid, signal.SIGKILL)
        started.procs[0].wait(10)
        heard: list[str | None] = []
        began = time.monotonic()
        with pytest.raises(ServerUnreachableError) as info:
            api.wait(
                study.id,
                poll_s=0.2,
                outage_s=2.0,
                on_outage=lambda exc: heard.append(None if exc is None else exc.reason),
            )
        waited = time.monotonic() - began
    assert heard == ["connection refused"]  # told once, when it stopped answering
    assert 2.0 <= waited < 10.0, waited
    message = str(info.value)
    assert message.startswith(f"cannot reach the lcw-sweep server at {own_url} (connection refused")
    assert f"study {study.id} is stored on the server" in message
    assert f"`lcw-sweep status {study.id} --wait`" in message


def test_a_server_that_hangs_during_wait_is_reported_within_the_poll_timeout(
    tmp_path: Path,
) -> None:
    spec = _write(tmp_path, "tiny.yaml", TINY)
    with serve(tmp_path, extra_args=("--no-worker",)) as (url, started):
        server = started.procs[0]
        waiting = subprocess.Popen(
            [str(BIN / "lcw-sweep"), "submit", str(spec), "--wait", "--poll", "0.5", "--url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            cwd=REPO,
        )
        try:
            assert waiting.stdout is not None
            study_id = int(waiting.stdout.readline().split()[2])
            time.sleep(1.0)
            os.kill(server.pid, signal.SIGSTOP)  # alive, accepting nothing: every poll hangs
            stopped_at = time.monotonic()
            seen, warned_at = _read_until(waiting, "stopped answering", timeout=20)
            assert warned_at - stopped_at < POLL_TIMEOUT_S + 3.0, warned_at - stopped_at
            assert "(timed out)" in seen and f"lcw-sweep status {study_id} --wait" in seen
            os.kill(server.pid, signal.SIGCONT)
            _read_until(waiting, "answers again", timeout=20)
            with Client(url) as api:
                api.cancel(study_id)
            out, err = waiting.communicate(timeout=30)
        finally:
            os.kill(server.pid, signal.SIGCONT)
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait(10)
        assert waiting.returncode == 1, err
        assert f"study {study_id} cancelled" in out

"""Access control and exposure: tokens, CORS, body caps, escaping, where `serve` listens.

- With ``LCW_API_TOKENS`` set, every write route (enumerated from the app's routes, so a new one
  cannot be missed) refuses a missing, wrong or non-Bearer token with 401 and changes nothing;
  the web pages write only through those routes (the form's browser test is in tests/web).
- Tokens never reach the server's output: a real ``lcw-sweep serve`` is driven with valid and
  invalid tokens and its whole log is searched for them.
- CORS is closed by default (no Access-Control-Allow-Origin for a foreign Origin, preflight
  included) and opens only for the configured origins.
- Bodies over ``LCW_MAX_BODY_BYTES`` are 413 over real HTTP, declared or streamed.
- User text is escaped on every page (markup and template syntax alike).
- ``serve`` binds 127.0.0.1 unless told otherwise, and warns when it listens publicly without
  tokens (checked without ever listening publicly: the port is taken, so the bind fails).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_helpers import BIN, REPO, clean_env, free_port, serve, study_spec
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route
from svc_helpers import snapshot

from service.api.deps import require_writer
from service.config import Settings
from service.main import create_app

TOKEN = "sec-test-token-4b1d9e0c7a"
WRONG = TOKEN[:-1] + "X"  # one character off: must not pass, and must not be logged either
SPEC = study_spec("access", depths=[2])
READS = {"GET", "HEAD"}


def _app(tmp: Path, **settings: Any) -> Any:
    return create_app(Settings(database_url=f"sqlite:///{tmp / 'lcw.db'}", **settings))


def _depends_on(dependant: Any, call: Any) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def _routes(app: Any) -> Iterator[tuple[str, Any]]:
    """(full path, route) of every route, through included routers (FastAPI >= 0.165 keeps
    them as _IncludedRouter entries whose effective routes carry the prefixed path)."""
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            for context in contexts():
                yield context.path, context.original_route
        else:
            yield route.path, route


def _write_routes(app: Any) -> list[tuple[str, str, APIRoute]]:
    out = []
    for path, route in _routes(app):
        if isinstance(route, APIRoute):
            out += [(m, path, route) for m in sorted(route.methods - READS)]
        else:
            assert isinstance(route, Route | Mount), route
            methods = getattr(route, "methods", None) or {"GET"}
            assert methods <= READS | {"OPTIONS"}, (path, methods)  # no unguarded writes
    return out


def test_every_write_route_refuses_a_missing_or_wrong_token(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path, api_tokens=f"another-token,{TOKEN}")) as client:
        app: Any = client.app
        writes = _write_routes(app)
        enumerated = {(m, p) for m, p, _ in writes}
        assert {("POST", "/api/studies"), ("DELETE", "/api/studies/{study_id}")} <= enumerated
        documented = {
            (m.upper(), p)
            for p, ops in client.get("/openapi.json").json()["paths"].items()
            for m in ops
            if m.upper() not in READS
        }
        assert documented == enumerated  # and the OpenAPI document agrees
        sid = client.post(
            "/api/studies", json=SPEC, headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()["id"]
        before = snapshot(app.state.engine)
        for method, path, route in writes:
            assert _depends_on(route.dependant, require_writer), (method, path)
            url = re.sub(r"\{[^}]+\}", str(sid), path)
            for headers in (
                {},
                {"Authorization": f"Bearer {WRONG}"},
                {"Authorization": "Bearer "},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": TOKEN},
                {"X-API-Token": TOKEN},
            ):
                r = client.request(method, url, json=SPEC, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.headers["WWW-Authenticate"] == "Bearer"
        assert snapshot(app.state.engine) == before  # nothing a refused call touched changed
        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post(f"/api/studies/{sid}/cancel", headers=ok).status_code == 200
        assert client.delete(f"/api/studies/{sid}", headers=ok).status_code == 204


def test_the_web_form_writes_only_through_the_guarded_api(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path, api_tokens=TOKEN)) as client:
        page = client.get("/").text
        assert 'id="token"' in page and 'type="password"' in page
        assert client.post("/", data={"spec": "x"}).status_code == 405
        assert client.post("/studies/1", data={}).status_code == 405
    # Every page route is read-only (checked in _write_routes), so whatever the page's script
    # does, a write can only be one of the guarded API routes. tests/web drives the form in
    # Chromium: refused without the token and with a wrong one, accepted with the right one.


def test_cors_is_closed_by_default_and_opens_only_for_configured_origins(tmp_path: Path) -> None:
    evil = {"Origin": "https://evil.example"}
    preflight = {**evil, "Access-Control-Request-Method": "POST"}
    with TestClient(_app(tmp_path)) as client:
        for r in (
            client.get("/api/studies", headers=evil),
            client.options("/api/studies", headers=preflight),
            client.post("/api/studies", json=SPEC, headers=evil),
        ):
            assert "access-control-allow-origin" not in r.headers, r.headers
            assert "access-control-allow-credentials" not in r.headers
    with TestClient(_app(tmp_path, cors_origins="https://ok.example")) as client:
        r = client.get("/api/studies", headers={"Origin": "https://ok.example"})
        assert r.headers["access-control-allow-origin"] == "https://ok.example"
        assert "access-control-allow-origin" not in client.get("/api/studies", headers=evil).headers
        r = client.options("/api/studies", headers=preflight)
        assert "access-control-allow-origin" not in r.headers


def test_user_text_is_escaped_on_every_page(tmp_path: Path) -> None:
    name = "{{ 7*7 }}<script>alert(1)</script>"
    description = "\"'><svg onload=alert(2)>{% raw %}${7*7}"
    with TestClient(_app(tmp_path)) as client:
        r = client.post("/api/studies", json={**SPEC, "name": name, "description": description})
        sid = r.json()["id"]
        tid = client.get(f"/api/studies/{sid}/trials").json()["data"][0]["id"]
        for path in ("/", "/fragments/studies", f"/studies/{sid}", f"/trials/{tid}"):
            html = client.get(path).text
            assert "<script>alert(1)</script>" not in html, path
            assert "<svg onload" not in html, path
            assert "{{ 7*7 }}" in html, path  # template syntax is shown as text, not run
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or (
                "\\u003cscript\\u003e" in html
            ), path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real `lcw-sweep serve --no-worker` with tokens and a 64 KiB body cap."""
    tmp = tmp_path_factory.mktemp("live")
    with serve(
        tmp,
        extra_args=("--no-worker",),
        LCW_API_TOKENS=f"{TOKEN},second-token-9z",
        LCW_MAX_BODY_BYTES=str(64 * 1024),
    ) as (url, _started):
        yield url, tmp / "serve.log"


def test_tokens_never_appear_in_the_server_output(live: tuple[str, Path]) -> None:
    url, log = live
    ok = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=30) as client:
        sid = client.post("/api/studies", json=SPEC, headers=ok).json()["id"]
        assert (
            client.post(
                "/api/studies", json=SPEC, headers={"Authorization": f"Bearer {WRONG}"}
            ).status_code
            == 401
        )
        assert client.post(f"/api/studies/{sid}/cancel", headers=ok).status_code == 200
        assert (
            client.delete(f"/api/studies/{sid}", headers={"Authorization": WRONG}).status_code
            == 401
        )
        assert client.delete(f"/api/studies/{sid}", headers=ok).status_code == 204
        bad = client.post(
            "/api/studies", content=b"{", headers={**ok, "Content-Type": "application/json"}
        )
        assert bad.status_code == 422 and TOKEN not in bad.text
        assert TOKEN not in client.get("/metrics").text
        assert TOKEN not in client.get("/openapi.json").text
    text = log.read_text(errors="replace")
    assert "POST /api/studies" in text  # the access log is on, and it is what we searched
    for secret in (TOKEN, WRONG, "second-token-9z"):
        assert secret not in text


def test_bodies_over_the_cap_are_413_over_real_http(live: tuple[str, Path]) -> None:
    url, _ = live
    ok = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    body = json.dumps({**SPEC, "description": "x" * (70 * 1024)}).encode()
    with httpx.Client(base_url=url, timeout=30) as client:
        before = client.get("/api/studies").json()["count"]
        assert client.post("/api/studies", content=body, headers=ok).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        r = client.post("/api/studies", content=chunks(), headers=ok)
        assert r.status_code == 413 and "LCW_MAX_BODY_BYTES" in r.text
        assert client.get("/api/studies").json()["count"] == before


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* shows them) listening on `port`."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                out.add(address)
    return out


def test_serve_binds_loopback_unless_told_otherwise(live: tuple[str, Path]) -> None:
    url, log = live
    port = int(url.rsplit(":", 1)[1])
    assert _listening(port) == {"0100007F"}  # 127.0.0.1 only
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log.read_text()


@pytest.mark.parametrize("tokens", ["", TOKEN], ids=["no-tokens", "tokens"])
def test_serve_warns_when_it_listens_publicly_without_tokens(tmp_path: Path, tokens: str) -> None:
    port = free_port()
    with socket.socket() as holder:  # bound, not listening: the server's bind fails, nobody
        holder.bind(("0.0.0.0", port))  # can connect, and the warning has been printed by then
        env = clean_env(LCW_DATABASE_URL=f"sqlite:///{tmp_path / 'lcw.db'}", LCW_API_TOKENS=tokens)
        done = subprocess.run(
            [
                str(BIN / "lcw-sweep"),
                "serve",
                "--host",
                "0.0.0.0",
                "--port",
                str(port),
                "--no-worker",
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output  # it never got to listen
    warned = "warning: listening on 0.0.0.0 without LCW_API_TOKENS" in output
    assert warned == (not tokens), output
    assert TOKEN not in output

"""The web routes without a browser: caching of assets, security headers, escaping, 404s, and
that a study page carries only aggregates and one table page."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from seeding import seed

from service.config import Settings
from service.main import create_app
from service.web.views import TABLE_PAGE


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = Path(tmp_path_factory.mktemp("routes")) / "web.db"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{db}", api_tokens=[]))) as c:
        c.seeded = seed(c.app.state.store)  # type: ignore[attr-defined]
        yield c


def test_plotly_is_the_basic_bundle_served_with_caching_headers(client: TestClient) -> None:
    page = client.get("/studies/1").text
    src = re.search(r'src="(/static/plotly-basic\.min\.js\?v=[0-9a-f]+)"', page)
    assert src, "the study page loads plotly.js's basic bundle from this server"
    first = client.get(src.group(1), headers={"Accept-Encoding": "identity"})
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/javascript")
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert b"plotly.js (basic" in first.content[:2000] and len(first.content) > 1_000_000
    again = client.get(src.group(1), headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    zipped = client.get(src.group(1), headers={"Accept-Encoding": "gzip"})
    assert zipped.headers.get("content-encoding") == "gzip"
    assert zipped.content == first.content  # httpx decodes it back
    assert gzip.compress(first.content)[:2] == b"\x1f\x8b"
    assert client.get("/static/plotly-basic.min.js").headers["cache-control"] == "no-cache"


def test_pages_are_gzipped_for_clients_that_accept_it(client: TestClient) -> None:
    path = f"/studies/{client.seeded.main}"  # type: ignore[attr-defined]
    plain = client.get(path, headers={"Accept-Encoding": "identity"})
    zipped = client.get(path, headers={"Accept-Encoding": "gzip, deflate"})
    assert plain.status_code == zipped.status_code == 200
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert plain.headers["vary"] == zipped.headers["vary"] == "Accept-Encoding"
    # httpx decodes it back: the same page, but for the study's age, which the two requests
    # may see on either side of a second ("created 1 s ago" / "created 2 s ago").
    age = re.compile(r">created [^<]* ago<")
    assert age.sub(">created ? ago<", zipped.text) == age.sub(">created ? ago<", plain.text)
    assert age.search(plain.text)  # the normalization has something to normalize
    assert int(zipped.headers["content-length"]) < len(plain.content) / 3
    assert zipped.headers["content-security-policy"] == plain.headers["content-security-policy"]
    small = client.get("/studies/999999", headers={"Accept-Encoding": "gzip"})  # a short 404
    assert small.status_code == 404 and "content-encoding" not in small.headers


def test_static_names_outside_the_folder_are_not_served(client: TestClient) -> None:
    for name in ("..%2Fpages.py", "pages.py", "..%2F..%2Fconfig.py", "nope.js"):
        assert client.get(f"/static/{name}").status_code == 404
    assert client.get("/static/app.css").status_code == 200


def test_pages_send_a_strict_csp_and_have_no_inline_scripts(client: TestClient) -> None:
    for path in ("/", "/studies/1", "/trials/1", "/studies/4"):
        response = client.get(path)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        for tag in re.findall(r"<script\b[^>]*>", response.text):
            assert "src=" in tag or 'type="application/json"' in tag, tag
        assert " on" not in "".join(re.findall(r"<[a-z]+\b[^>]*\bon\w+=", response.text))


def test_markup_is_escaped_in_html_and_in_the_data_islands(client: TestClient) -> None:
    xss = client.seeded.xss  # type: ignore[attr-defined]
    for path in ("/", f"/studies/{xss}", "/fragments/studies"):
        html = client.get(path).text
        assert "<script>alert(1)</script>" not in html
        assert '<img src=x onerror="alert(2)">' not in html
    html = client.get(f"/studies/{xss}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in html  # tojson in the island


def test_missing_things_get_the_404_page(client: TestClient) -> None:
    for path in ("/studies/99999", "/trials/99999", "/studies/abc", "/trials/-1"):
        response = client.get(path)
        assert response.status_code == 404 and "Nothing here" in response.text
    assert client.get("/studies/99999/table").status_code == 404
    assert client.get("/studies/1/cell", params={"activation": "gelu"}).status_code == 404


def test_the_study_page_inlines_only_aggregates_and_one_table_page(client: TestClient) -> None:
    html = client.get("/studies/1").text
    assert html.count("<tr data-trial-id=") == TABLE_PAGE
    assert len(html) < 200_000
    table = client.get("/studies/1/table", params={"page": 3, "sort": "test_acc", "dir": "desc"})
    assert table.status_code == 200 and table.text.count("<tr data-trial-id=") == 144 - 2 * 50
    lenient = client.get("/studies/1/table", params={"sort": "config", "depth": "x", "page": "0"})
    assert lenient.status_code == 200 and lenient.text.count("<tr data-trial-id=") == TABLE_PAGE


def test_cell_view_means_over_seeds_at_the_best_lr(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    summary = store.summary(1)
    best = {
        c.method: c.best_lr
        for c in summary.cells
        if (c.depth, c.width, c.activation) == (20, 100, "sigmoid")
    }
    body = client.get(
        "/studies/1/cell", params={"depth": 20, "width": 100, "activation": "sigmoid"}
    )
    data = body.json()
    assert set(data["curves"]) == {"plain", "bn", "lcw", "bn_lcw"}
    for method, curve in data["curves"].items():
        assert curve["lr"] == best[method] and curve["epoch"] == [0, 1, 2, 3, 4, 5]
        assert curve["n"] == [3] * 6
        trials = store.list_trials(1, method=method, depth=20, activation="sigmoid", limit=100)
        finals = [t.test_acc for t in trials.data if t.lr == best[method]]
        assert curve["test_acc"][-1] == pytest.approx(sum(finals) / len(finals))
    lcw, plain = data["diagnostics"]["lcw"], data["diagnostics"]["plain"]
    assert lcw["init"]["layer"] == list(range(1, 21)) and lcw["last_epoch"] == 5
    assert plain["init"]["shift"][-1] > 10 * lcw["init"]["shift"][-1]  # shift compounds


def test_web_routes_stay_out_of_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert all(
        p.startswith("/api/") or p in ("/healthz", "/livez", "/readyz", "/metrics") for p in paths
    )

"""The console's static bundle: served at `/` and `/assets`, public, strict headers, nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from amosflow import console
from amosflow.api import is_public
from amosflow.api.app import NodeConfig, create_app

INDEX = '<!doctype html><html lang="en"><script type="module" src="/assets/index-Ab_1.js"></script></html>'


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "assets" / "index-Ab_1.js").write_text("console.log('console');")
    return dist


def _get(app: FastAPI, *paths: str) -> list[httpx.Response]:
    """GET each path in process (no lifespan runs, so no Temporal is needed)."""

    async def fetch() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(fetch())


def _app(dist: Path) -> FastAPI:
    app = FastAPI()
    console.mount(app, dist)
    return app


def test_the_page_and_its_assets_are_served_with_a_strict_policy(bundle: Path) -> None:
    """`/` is index.html, `/assets/<name>` the file; both carry the CSP and nosniff."""
    page, asset = _get(_app(bundle), "/", "/assets/index-Ab_1.js")
    assert page.status_code == 200
    assert page.text == INDEX
    assert page.headers["cache-control"] == "no-cache"
    assert asset.status_code == 200
    assert asset.text == "console.log('console');"
    assert "immutable" in asset.headers["cache-control"]
    for response in (page, asset):
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self' 'unsafe-eval'" in policy
        assert "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"


def test_a_missing_asset_is_404_and_no_path_climbs_out(bundle: Path) -> None:
    """Unknown assets are 404; `..` does not reach index.html or anything beside the bundle."""
    (bundle.parent / "secret.txt").write_text("nope")
    missing, *climbs = _get(
        _app(bundle), "/assets/missing.js", "/assets/../index.html", "/assets/%2e%2e/secret.txt"
    )
    assert missing.status_code == 404
    for response in climbs:
        assert response.status_code == 404
        assert "nope" not in response.text
        assert "module" not in response.text


def test_without_a_build_the_page_says_how_to_make_one(tmp_path: Path) -> None:
    """No bundle: `/` answers 503 with a page naming `make console`; assets are 404, not 500."""
    page, asset = _get(_app(tmp_path / "nothing"), "/", "/assets/index.js")
    assert page.status_code == 503
    assert "make console" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert asset.status_code == 404


def test_only_the_page_and_flat_asset_names_are_public() -> None:
    """`/` and `/assets/<file>` are public; nearby paths, nested or dotted tricks are not."""
    assert is_public("/")
    assert is_public("/assets/index-Bhr_hO3z.js")
    assert is_public("/assets/index-Mexmmtsg.css")
    for near in (
        "//",
        "/index.html",
        "/assets",
        "/assets/",
        "/assets/../api/v1/runs",
        "/assets/a/b.js",
        "/assets/.hidden",
        "/assets/x.js/",
        "/ASSETS/x.js",
        "/assets/x.js;y",
        "/api/v1/runs",
    ):
        assert not is_public(near), near


def test_the_node_serves_the_console_without_a_token_but_nothing_more() -> None:
    """On the real app the page answers a stranger; an API route next to it still says 401."""
    app = create_app(NodeConfig(store_url="sqlite://", catalog_path=Path()))
    page, asset, *denied = _get(
        app, "/", "/assets/nothing-here.js", "/index.html", "/api/v1/runs", "/assets/a/b.js"
    )
    assert page.status_code in {200, 503}, page.text
    assert "content-security-policy" in page.headers
    assert asset.status_code == 404
    assert [r.status_code for r in denied] == [401, 401, 401]

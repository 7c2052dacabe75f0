"""Swagger UI and ReDoc work air-gapped: every asset they load is served by the service itself."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.harness import live_service, make_settings


async def test_swagger_ui_and_redoc_load_only_assets_the_service_serves(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        for page in ("/docs", "/redoc"):
            html = await live.client.get(page)
            assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
            urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text) + re.findall(
                r"""url: ['"]([^'"]+)['"]""", html.text
            )
            assert urls, page
            for url in urls:
                assert url.startswith("/"), (page, url)  # no CDN, no other host
                asset = await live.client.get(url)
                assert asset.status_code == 200, (page, url)
                assert len(asset.content) > 100
        redirect = await live.client.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200

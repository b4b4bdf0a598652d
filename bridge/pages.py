"""The browser pages of the reference server: the demo app, its legacy twin and their static files.

`/` is the demo app on one `wsClient` (bridge/static/wsclient.js), `/legacy` the same app as it was
before the refactor (one socket per view), `/static/*` the files they load.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Pages and modules change with the server: revalidate instead of caching stale copies.
_NO_CACHE = {"Cache-Control": "no-cache"}


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html; charset=utf-8", headers=_NO_CACHE)


def install_pages(app: FastAPI) -> None:
    """Mount `/static` and serve `/` (app.html) and `/legacy` (legacy.html) on `app`."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def app_page() -> FileResponse:
        return _page("app.html")

    @app.get("/legacy", include_in_schema=False)
    async def legacy_page() -> FileResponse:
        return _page("legacy.html")

    @app.get("/ops", include_in_schema=False)
    async def ops_page() -> FileResponse:
        """The migration console; its data comes from the admin API (admin token asked on the page)."""
        return _page("ops.html")

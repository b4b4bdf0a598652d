"""wsmigrate's own pages and browser files: the `/ops` console and, under `/static`, the browser
client (`wsclient.js` and its TypeScript declarations) and the console's modules."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PACKAGE = ("wsmigrate.bridge.server", "static")  # for StaticFiles(packages=[...])
# Pages and modules change with the server: revalidate instead of caching stale copies.
NO_CACHE = {"Cache-Control": "no-cache"}


def page(path: Path) -> FileResponse:
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=NO_CACHE)


def install_ops_page(app: FastAPI) -> None:
    @app.get("/ops", include_in_schema=False)
    async def ops_page() -> FileResponse:
        """The migration console; its data comes from the admin API (admin token asked on the page)."""
        return page(STATIC_DIR / "ops.html")

"""A small client of the admin API, used by the `wsmigrate` operator commands."""

from __future__ import annotations

from typing import Any

import httpx

from wsmigrate.bridge.errors import BridgeError

TIMEOUT_S = 10.0


class AdminError(BridgeError):
    """The admin API refused a request or could not be reached."""


class AdminClient:
    def __init__(self, base_url: str, token: str, *, actor: str = "cli") -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=TIMEOUT_S,
            headers={"Authorization": f"Bearer {token}", "X-Wsmigrate-Actor": actor},
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach {self._http.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AdminError(f"{method} {path}: {response.status_code} {detail}")
        return response.json()

    def flags(self) -> dict[str, Any]:
        return self._call("GET", "/api/admin/flags")  # type: ignore[no-any-return]

    def set_stage(self, event_type: str, stage: str, *, force: bool = False) -> dict[str, Any]:
        return self._call("PUT", f"/api/admin/flags/{event_type}", {"stage": stage, "force": force})  # type: ignore[no-any-return]

    def kill(self, on: bool) -> dict[str, Any]:
        return self._call("POST" if on else "DELETE", "/api/admin/flags/kill")  # type: ignore[no-any-return]


def render_flags(view: dict[str, Any]) -> str:
    lines = [f"revision {view['revision']}  kill_switch {'ON' if view['kill_switch'] else 'off'}  "
             f"default {view['default_stage']}"]
    lines.append(f"{'event type':<22} {'stage':<9} {'source':<12} live%")
    for event_type, row in view["types"].items():
        lines.append(f"{event_type:<22} {row['stage']:<9} {row['source']:<12} {row['live_percent']}")
    if view.get("last_error"):
        lines.append(f"last flags error: {view['last_error']}")
    return "\n".join(lines)

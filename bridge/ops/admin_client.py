"""A small client of the admin API, used by the `wsmigrate` operator commands."""

from __future__ import annotations

from typing import Any

import httpx

from wsmigrate.bridge.errors import BridgeError

TIMEOUT_S = 10.0


class AdminError(BridgeError):
    """The admin API refused a request or could not be reached; the message is one plain line."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def _detail(response: httpx.Response) -> str:
    """The server's reason, as a sentence: FastAPI's `detail` string, or its validation errors."""
    try:
        detail: Any = response.json().get("detail", response.text)
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(detail, list):  # pydantic's errors: "body.stage: Input should be 'off', ..."
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                         for e in detail if isinstance(e, dict))
    return str(detail)


class AdminClient:
    def __init__(self, base_url: str, token: str, *, actor: str = "cli") -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=TIMEOUT_S,
            headers={"Authorization": f"Bearer {token}", "X-Wsmigrate-Actor": actor},
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        base = str(self._http.base_url).rstrip("/")
        try:
            response = self._http.request(method, path, json=body)
        except httpx.ConnectError:
            raise AdminError(f"cannot reach {base}: nothing answers there (is the server running?)") from None
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach {base}: {exc or type(exc).__name__}") from None
        if response.status_code == 401:
            raise AdminError(f"{base} refused the admin token (401): pass the server's WSMIGRATE_ADMIN_TOKEN "
                             "with --admin-token or the WSMIGRATE_ADMIN_TOKEN variable", 401)
        if response.status_code >= 400:
            raise AdminError(f"{base}: {_detail(response)} ({response.status_code})", response.status_code)
        try:
            return response.json()
        except ValueError:
            raise AdminError(f"{base} did not answer like a wsmigrate server (no JSON at {path})") from None

    def flags(self) -> dict[str, Any]:
        return self._call("GET", "/api/admin/flags")  # type: ignore[no-any-return]

    def set_stage(self, event_type: str, stage: str, *, force: bool = False) -> dict[str, Any]:
        return self._call("PUT", f"/api/admin/flags/{event_type}", {"stage": stage, "force": force})  # type: ignore[no-any-return]

    def kill(self, on: bool) -> dict[str, Any]:
        return self._call("POST" if on else "DELETE", "/api/admin/flags/kill")  # type: ignore[no-any-return]


def render_flags(view: dict[str, Any]) -> str:
    lines = [f"revision {view['revision']}  kill_switch {'ON' if view['kill_switch'] else 'off'}  "
             f"default {view['default_stage']}"]
    store = view.get("store") or {}
    if store and not store.get("writable", True):
        lines.append(f"source of truth: the {store['kind']} provider {store.get('provider')!r} (read-only here: "
                     f"set {store.get('stage_flag')} there)")
    elif store:
        lines.append(f"source of truth: the {store['kind']} flag store")
    lines.append(f"{'event type':<22} {'stage':<9} {'source':<12} live%")
    for event_type, row in view["types"].items():
        line = f"{event_type:<22} {row['stage']:<9} {row['source']:<12} {row['live_percent']}"
        cohort = row.get("provider_cohort")
        if cohort:  # the flag system picks the live cohort: this worker's split
            line += f"  ({cohort['live']} of {cohort['live'] + cohort['legacy']} legacy sockets live, by the provider)"
        lines.append(line)
    if view.get("last_error"):
        lines.append(f"last flags error: {view['last_error']}")
    return "\n".join(lines)

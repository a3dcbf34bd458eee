"""The browser client's server: static files of web/ plus two local-only JSON endpoints (docs/LAYOUT.md)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from .tokens import make_token

__all__ = ["make_web_app"]

NO_CACHE = {"Cache-Control": "no-store, max-age=0"}
# index.html carries the full Content-Security-Policy in a meta tag; frame-ancestors only works as a header
# (browsers enforce every policy they are given, so the two combine).
PAGE_HEADERS = {
    **NO_CACHE,
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
MAX_TOKEN_TTL_S = 7 * 24 * 3600

_PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chat (local)</title></head>
<body><p>The browser client (web/index.html) is not there yet. WebSocket: <code id="ws"></code></p>
<script>fetch('/config.json').then(r => r.json()).then(c => {
  document.getElementById('ws').textContent = c.wsUrl; });</script></body></html>
"""


def make_web_app(
    *, web_dir: Path, ws_url: str, stage: str, jwt_secret: str, max_message_bytes: int | None = None
) -> web.Application:
    """``max_message_bytes``: the functions' ``MAX_MESSAGE_BYTES``; ``/config.json`` carries
    ``maxMessageBytes`` only when it is set (the client keeps its own default otherwise)."""
    root = web_dir.resolve()
    settings: dict[str, object] = {"wsUrl": ws_url, "stage": stage, "local": True}
    if max_message_bytes is not None:
        settings["maxMessageBytes"] = max_message_bytes

    async def config(_: web.Request) -> web.Response:
        return web.json_response(settings, headers=NO_CACHE)

    async def token(request: web.Request) -> web.Response:
        user = request.query.get("user", "").strip()
        if not user:
            return web.json_response(
                {"message": "query parameter 'user' is required"}, status=400, headers=NO_CACHE
            )
        try:
            ttl = int(request.query.get("ttl", "3600"))
        except ValueError:
            return web.json_response(
                {"message": "'ttl' must be an integer (seconds)"}, status=400, headers=NO_CACHE
            )
        if not 1 <= ttl <= MAX_TOKEN_TTL_S:
            return web.json_response(
                {"message": f"'ttl' must be between 1 and {MAX_TOKEN_TTL_S}"}, status=400, headers=NO_CACHE
            )
        value, expires = make_token(
            jwt_secret,
            user,
            name=request.query.get("name") or None,
            room=request.query.get("room") or None,
            ttl_s=ttl,
        )
        return web.json_response({"token": value, "user_id": user, "expires_at": expires}, headers=NO_CACHE)

    async def static(request: web.Request) -> web.StreamResponse:
        rel = request.match_info.get("path", "") or "index.html"
        target = (root / rel).resolve()
        if root not in target.parents and target != root:
            raise web.HTTPNotFound()
        if target.is_dir():
            target = target / "index.html"
        if target.is_file():
            return web.FileResponse(target, headers=PAGE_HEADERS)
        if rel == "index.html":
            return web.Response(text=_PLACEHOLDER, content_type="text/html", headers=PAGE_HEADERS)
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/config.json", config)
    app.router.add_get("/dev/token", token)
    app.router.add_get("/{path:.*}", static)
    return app

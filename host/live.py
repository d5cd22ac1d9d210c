"""Live training updates for the frontend: server-to-client messages keyed by node id, and a history
the server keeps so a reloaded page can redraw the chart mid-run."""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("kiln")

EVENT = "kiln.progress"
_MAX_POINTS = 5000
_HISTORY: dict[str, dict] = {}
_LOCK = threading.Lock()
_ROUTES_ADDED = False


def _server():
    try:
        from server import PromptServer
    except Exception:  # headless runner: no server module loaded
        return None
    return getattr(PromptServer, "instance", None)


def current_node_id() -> str | None:
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return None
    ctx = get_executing_context()
    return None if ctx is None else str(ctx.node_id)


def start(node_id: str | None, total: int, name: str) -> None:
    if node_id is None:
        return
    with _LOCK:
        _HISTORY[node_id] = {"node": node_id, "name": name, "total": total, "step": 0, "epoch": 0, "eta": None,
                             "points": [], "samples": [], "started": time.time(), "running": True}
    _send(node_id)


def step(node_id: str | None, step_: int, total: int, loss: float, epoch: int) -> None:
    if node_id is None:
        return
    with _LOCK:
        h = _HISTORY.get(node_id)
        if h is None:
            return
        h["points"].append([step_, loss])
        del h["points"][:-_MAX_POINTS]
        elapsed = time.time() - h["started"]
        h.update(step=step_, total=total, epoch=epoch, eta=elapsed / max(1, step_) * (total - step_))
    _send(node_id, last_only=True)


def samples(node_id: str | None, refs: list[dict]) -> None:
    if node_id is None:
        return
    with _LOCK:
        if node_id in _HISTORY:
            _HISTORY[node_id]["samples"] = refs
    _send(node_id, last_only=True)


def finish(node_id: str | None) -> None:
    if node_id is None:
        return
    with _LOCK:
        if node_id in _HISTORY:
            _HISTORY[node_id]["running"] = False
    _send(node_id, last_only=True)


def history() -> dict:
    with _LOCK:
        return {k: dict(v, points=list(v["points"])) for k, v in _HISTORY.items()}


def _send(node_id: str, last_only: bool = False) -> None:
    srv = _server()
    if srv is None:
        return
    with _LOCK:
        h = dict(_HISTORY[node_id])
        h["points"] = h["points"][-1:] if last_only else list(h["points"])
        h["append"] = last_only
    try:
        srv.send_sync(EVENT, h)
    except Exception:  # a closed socket must never stop a bake
        log.debug("Kiln: could not send a live update", exc_info=True)


def add_routes() -> None:
    """GET /kiln/history: every train node's history (the chart survives a page reload)."""
    global _ROUTES_ADDED
    srv = _server()
    if srv is None or _ROUTES_ADDED:
        return
    from aiohttp import web

    @srv.routes.get("/kiln/history")
    async def _history(request):
        return web.json_response(history())
    _ROUTES_ADDED = True

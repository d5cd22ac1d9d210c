"""Live training updates for the frontend: server-to-client messages for a node, and a history the server keeps
per run (prompt id + node id), so a new run never erases the last run's chart and a reloaded page redraws the
latest run's chart, validation line and sample timeline mid-run. GET /kiln/history serves it; add_routes also adds
the caption editor's routes (host.caption_routes)."""
from __future__ import annotations

import contextlib
import logging
import threading
import time

log = logging.getLogger("kiln")

EVENT = "kiln.progress"
_MAX_POINTS = 5000
_MAX_SAMPLES = 600   # sample refs kept per node (steps x prompts) for the timeline
_MAX_RUNS = 50        # finished runs kept (oldest dropped first)
_HISTORY: dict[str, dict] = {}    # run key (prompt id:node id) -> that run's history
_CURRENT: dict[str, str] = {}     # node id -> the key of its latest run
_LOCK = threading.Lock()
_ROUTES_ADDED = False


def _server():
    try:
        from server import PromptServer
    except Exception:  # headless runner: no server module loaded
        return None
    return getattr(PromptServer, "instance", None)


def _prompt_id() -> str:
    srv = _server()
    return str(getattr(srv, "last_prompt_id", None) or "") if srv is not None else ""


def start(node_id: str | None, total: int, name: str) -> None:
    if node_id is None:
        return
    run = f"{_prompt_id() or time.time()}:{node_id}"
    with _LOCK:
        if run in _HISTORY:   # a second bake of the same node in one prompt (the other expert): its own run
            run = f"{run}:{len(_HISTORY)}"
        _HISTORY[run] = {"node": node_id, "run": run, "name": name, "total": total, "step": 0, "epoch": 0,
                         "eta": None, "points": [], "validation": [], "samples": [], "prompts": [],
                         "started": time.time(), "running": True}
        _CURRENT[node_id] = run
        for old in [k for k, v in _HISTORY.items() if not v["running"]][:-_MAX_RUNS]:
            del _HISTORY[old]
    _send(node_id)


@contextlib.contextmanager
def _updating(node_id: str | None):
    """The node's history, under the lock, for an update that is then sent; None (nothing sent) when the node
    has no live history (headless, or no start())."""
    h = None
    if node_id is not None:
        with _LOCK:
            h = _HISTORY.get(_CURRENT.get(node_id, ""))
            yield h
    else:
        yield None
    if h is not None:
        _send(node_id, last_only=True)


def step(node_id: str | None, step_: int, total: int, loss: float, epoch: int) -> None:
    with _updating(node_id) as h:
        if h is None:
            return
        h["points"].append([step_, loss])
        del h["points"][:-_MAX_POINTS]
        elapsed = time.time() - h["started"]
        h.update(step=step_, total=total, epoch=epoch, eta=elapsed / max(1, step_) * (total - step_))


def samples(node_id: str | None, refs: list[dict], prompts: list[str] | None = None) -> None:
    """refs: this sample step's images ({filename, subfolder, type, step, prompt}); the history keeps every
    step's, so the frontend can draw each prompt across the steps."""
    with _updating(node_id) as h:
        if h is None:
            return
        h["samples"] = (h["samples"] + list(refs))[-_MAX_SAMPLES:]
        if prompts is not None:
            h["prompts"] = list(prompts)


def validation(node_id: str | None, step_: int, loss: float) -> None:
    with _updating(node_id) as h:
        if h is None:
            return
        h["validation"].append([step_, loss])


def finish(node_id: str | None) -> None:
    with _updating(node_id) as h:
        if h is not None:
            h["running"] = False


def history() -> dict:
    """Every kept run's history, by run key (each carries its node id and start time)."""
    with _LOCK:
        return {k: dict(v, points=list(v["points"]), samples=list(v["samples"]), validation=list(v["validation"]))
                for k, v in _HISTORY.items()}


def _send(node_id: str, last_only: bool = False) -> None:
    srv = _server()
    if srv is None:
        return
    with _LOCK:
        h = dict(_HISTORY[_CURRENT[node_id]])
        h["points"] = h["points"][-1:] if last_only else list(h["points"])
        h["samples"], h["validation"] = list(h["samples"]), list(h["validation"])
        h["append"] = last_only
    try:
        srv.send_sync(EVENT, h)
    except Exception:  # a closed socket must never stop a bake
        log.debug("Kiln: could not send a live update", exc_info=True)


def add_routes() -> None:
    """GET /kiln/history: every train node's history (the chart survives a page reload); the caption
    editor's /kiln/captions routes."""
    global _ROUTES_ADDED
    srv = _server()
    if srv is None or _ROUTES_ADDED:
        return
    from aiohttp import web

    @srv.routes.get("/kiln/history")
    async def _history(request):
        return web.json_response(history())
    from .caption_routes import add_caption_routes
    add_caption_routes(srv, web)
    _ROUTES_ADDED = True

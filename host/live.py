"""Live training updates for the frontend: server-to-client messages for a node, and a history the server keeps
per run (prompt id + node id), so a new run never erases the last run's chart and a reloaded page redraws the
latest run's chart, validation line and sample timeline mid-run. Also the caption editor's routes (the file work
itself is core.data.caption_edit)."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

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
    _add_caption_routes(srv, web)
    _ROUTES_ADDED = True


def _add_caption_routes(srv, web) -> None:
    """The caption editor. Datasets are named as in Kiln Load Dataset (relative to the input folder) and
    confined to it; every file stays inside its dataset folder (core.data.caption_edit checks each path)."""
    import folder_paths
    from ..core.data import caption_edit as ce

    def root_of(dataset):
        return ce.dataset_root(Path(folder_paths.get_input_directory()), dataset)

    def refuse(exc):
        return web.json_response({"error": str(exc)}, status=400 if isinstance(exc, ce.CaptionEditError) else 500)

    @srv.routes.get("/kiln/captions")
    async def _list(request):
        q = request.rel_url.query
        try:
            return web.json_response(dict(ce.listing(root_of(q.get("dataset", "")), q.get("ext", ".txt")),
                                          dataset=q.get("dataset", "")))
        except (ce.CaptionEditError, OSError) as exc:
            return refuse(exc)

    @srv.routes.get("/kiln/captions/image")
    async def _image(request):
        q = request.rel_url.query
        try:
            path = ce.image_path(root_of(q.get("dataset", "")), q.get("file", ""))
        except (ce.CaptionEditError, OSError) as exc:
            return refuse(exc)
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    @srv.routes.post("/kiln/captions/save")
    async def _save(request):
        try:
            body = await request.json()
            root = root_of(body.get("dataset", ""))
            ext = body.get("ext", ".txt")
            ce.image_path(root, body.get("file", ""))
            ce.write_caption(ce.caption_path(root, body["file"], ext), str(body.get("caption", "")))
            log.info("Kiln: caption saved for %s in %s", body["file"], root)
            return web.json_response(dict(ce.listing(root, ext), dataset=body.get("dataset", "")))
        except (ce.CaptionEditError, OSError, ValueError, KeyError) as exc:
            return refuse(ce.CaptionEditError(str(exc)) if isinstance(exc, (ValueError, KeyError)) else exc)

    @srv.routes.post("/kiln/captions/bulk")
    async def _bulk(request):
        try:
            body = await request.json()
            root = root_of(body.get("dataset", ""))
            ext = body.get("ext", ".txt")
            changed = ce.bulk_edit(root, list(body.get("files", [])), list(body.get("add", [])),
                                   list(body.get("remove", [])), ext)
            log.info("Kiln: tags edited on %d caption(s) in %s", len(changed), root)
            return web.json_response(dict(ce.listing(root, ext), dataset=body.get("dataset", ""), changed=changed))
        except (ce.CaptionEditError, OSError, ValueError) as exc:
            return refuse(ce.CaptionEditError(str(exc)) if isinstance(exc, ValueError) else exc)

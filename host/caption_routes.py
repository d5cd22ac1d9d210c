"""The caption editor's HTTP routes: list a dataset's images and captions, serve an image, save one caption, edit
tags on many. Datasets are named as in Kiln Load Dataset and confined by the one path policy (core.paths); every
file stays inside its dataset folder (core.data.caption_edit checks each path).

Anyone who reaches the server can call these, so each route: runs its file work off the event loop (other
requests never wait on it); takes JSON bodies only (``application/json``, which a cross-site form cannot send
without the browser asking first) and refuses ``Origin: null``; caps the body, list lengths and string sizes;
answers a malformed request with 400 and a short reason; and names files relative to the dataset, never by the
machine's paths. A bulk edit is all or nothing."""
from __future__ import annotations

import asyncio
import json
import logging

import folder_paths

from ..core.data import caption_edit as ce

log = logging.getLogger("kiln")

MAX_BODY = 8 << 20        # bytes of one request body (a bulk edit of thousands of paths fits)
MAX_DEPTH = 4             # nesting of a request body (a flat object of strings and lists)


class BadRequest(ValueError):
    pass


def _depth(value, limit: int, level: int = 1) -> None:
    if level > limit:
        raise BadRequest("the request body is nested too deeply")
    if isinstance(value, dict):
        for v in value.values():
            _depth(v, limit, level + 1)
    elif isinstance(value, list):
        for v in value:
            _depth(v, limit, level + 1)


async def _json_body(request) -> dict:
    """The request's JSON object, or BadRequest saying what is wrong with it."""
    if request.headers.get("Origin", "").strip().lower() == "null":
        raise BadRequest("requests from an opaque origin (Origin: null) are refused")
    if request.content_type != "application/json":
        raise BadRequest("send the body as application/json")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest(f"the body is larger than {MAX_BODY} bytes")
    raw = bytearray()
    while chunk := await request.content.read(1 << 16):
        raw += chunk
        if len(raw) > MAX_BODY:
            raise BadRequest(f"the body is larger than {MAX_BODY} bytes")
    try:
        body = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    _depth(body, MAX_DEPTH)
    return body


def _root(dataset: str):
    return ce.dataset_root(folder_paths.get_input_directory(), dataset)


def _list(query) -> dict:
    dataset = ce.text_field(dict(query), "dataset", "")
    ext = ce.text_field(dict(query), "ext", ".txt")
    return dict(ce.listing(_root(dataset), ext), dataset=dataset)


def _image(query):
    q = dict(query)
    return ce.image_path(_root(ce.text_field(q, "dataset", "")), ce.text_field(q, "file", ""))


def _save(body: dict) -> dict:
    dataset, ext = ce.text_field(body, "dataset", ""), ce.text_field(body, "ext", ".txt")
    file = ce.text_field(body, "file")
    caption = ce.text_field(body, "caption", limit=ce.MAX_CAPTION_BYTES)
    root = _root(dataset)
    ce.image_path(root, file)
    ce.write_caption(ce.caption_path(root, file, ext), caption)
    log.info("Kiln: caption saved for %s in dataset %s", file, dataset)
    return dict(ce.listing(root, ext), dataset=dataset)


def _bulk(body: dict) -> dict:
    dataset, ext = ce.text_field(body, "dataset", ""), ce.text_field(body, "ext", ".txt")
    files = ce.list_field(body, "files", ce.MAX_FILES)
    add, remove = ce.list_field(body, "add", ce.MAX_TAGS), ce.list_field(body, "remove", ce.MAX_TAGS)
    root = _root(dataset)
    changed = ce.bulk_edit(root, files, add, remove, ext)
    log.info("Kiln: tags edited on %d caption(s) in dataset %s", len(changed), dataset)
    return dict(ce.listing(root, ext), dataset=dataset, changed=changed)


def add_caption_routes(srv, web) -> None:
    def refuse(exc, status=400):
        return web.json_response({"error": str(exc)}, status=status)

    async def answer(work, *args):
        try:
            return web.json_response(await asyncio.to_thread(work, *args))
        except (ce.CaptionEditError, BadRequest) as exc:
            return refuse(exc)
        except OSError as exc:
            return refuse(f"the file system refused: {exc.strerror or type(exc).__name__}", 500)

    @srv.routes.get("/kiln/captions")
    async def _list_route(request):
        return await answer(_list, request.rel_url.query)

    @srv.routes.get("/kiln/captions/image")
    async def _image_route(request):
        try:
            path = await asyncio.to_thread(_image, request.rel_url.query)
        except (ce.CaptionEditError, BadRequest) as exc:
            return refuse(exc)
        except OSError as exc:
            return refuse(f"the file system refused: {exc.strerror or type(exc).__name__}", 500)
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    def json_route(work):
        async def route(request):
            try:
                body = await _json_body(request)
            except BadRequest as exc:
                return refuse(exc)
            return await answer(work, body)
        return route

    srv.routes.post("/kiln/captions/save")(json_route(_save))
    srv.routes.post("/kiln/captions/bulk")(json_route(_bulk))

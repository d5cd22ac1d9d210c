"""The command line (``python -m kiln``, or ``kiln`` when installed with pip; ``python -m cli`` is an alias): run workflows headless, the demo, the LoRA tools and the export."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import PACK_ROOT, load_pack


def _run(args) -> int:
    load_pack()
    from cli import runner
    runner.boot_host(args.work_dir)
    started = time.perf_counter()
    result = runner.run_workflow(args.workflow)
    return _report(result, time.perf_counter() - started)


def _report(result, seconds: float) -> int:
    for path in result.files():
        print(f"output: {path}")
    for node_id, out in result.outputs.items():
        for text in out.get("text", []):
            print(f"node {node_id}: {text}")
    if not result.success:
        err = result.error or {}
        print(f"FAILED in node {err.get('node_id')} ({err.get('node_type')}): {err.get('exception_message', err)}",
              file=sys.stderr)
        return 1
    print(f"done in {seconds:.1f} s")
    return 0


def _demo(args) -> int:
    load_pack()
    from kiln.devtools import fixtures
    from cli import runner
    started = time.perf_counter()
    work = Path(args.work_dir).resolve()
    runner.boot_host(work)
    assets = fixtures.ensure_demo_assets(work / "cache")
    print(f"tiny checkpoint: {assets.checkpoint_path}")
    print(f"tiny image set:  {assets.dataset_dir}")
    result = runner.run_workflow(PACK_ROOT / "workflows" / "train_then_sample.json")
    code = _report(result, time.perf_counter() - started)
    loras = sorted((work / "models" / "loras").rglob("*.safetensors"))
    for p in loras:
        print(f"lora: {p}")
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kiln", description="Kiln: train LoRAs in ComfyUI graphs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a workflow (UI or API format JSON) through ComfyUI's executor, no browser")
    p.add_argument("workflow", help="path to the workflow .json")
    p.add_argument("--work-dir", default=None,
                   help="redirect input/output/temp and add model folders here (default: the host's own folders)")
    p.set_defaults(func=_run)
    p = sub.add_parser("demo", help="build the tiny model and image set, then run workflows/train_then_sample.json")
    p.add_argument("--work-dir", default="out/demo", help="where the demo writes everything (default: out/demo)")
    p.set_defaults(func=_demo)
    try:
        from . import tools
        tools.register(sub)
    except ImportError as exc:
        if "tools" not in str(exc):
            raise
    from . import export
    export.register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, KeyError) as exc:
        # User errors (a missing or damaged file, bad settings) carry messages naming the file and the
        # fix: print that, not a traceback. KILN_TRACEBACK=1 shows the traceback for bug reports.
        if os.environ.get("KILN_TRACEBACK"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"kiln {args.command}: error: {message}", file=sys.stderr)
        return 2


def entry() -> None:
    """The ``kiln`` console script (pip install): the pack is already importable as ``kiln``."""
    sys.exit(main())

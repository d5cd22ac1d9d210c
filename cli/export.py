"""``python -m kiln export workflow.json``: the workflow's training recipe as kohya sd-scripts / musubi-tuner
TOML, an accelerate config and a diffusion-pipe TOML, without running (or training) anything."""
from __future__ import annotations

from . import load_pack

FORMATS = ("kohya", "musubi", "accelerate", "diffusion-pipe")


def _export(args) -> int:
    load_pack()
    from kiln.core.export import write_export
    from kiln.host import export
    from cli import runner
    runner.boot_host(args.work_dir)
    prompt = runner.load_workflow(args.workflow)
    r = export.recipe(prompt, args.family, args.train_node)
    paths = write_export(r, args.out, args.formats or FORMATS, args.num_gpus, args.num_machines, args.pipeline_stages)
    print(f"exported '{r.output_name}' ({r.family}):")
    for p in paths:
        print(f"  {p}")
    for note in r.notes:
        print(f"note: {note}")
    print(f"see {paths[-1].parent / 'HOW_TO_RUN.txt'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="write the workflow's Train node as kohya / musubi-tuner / accelerate / "
                                      "diffusion-pipe config files")
    p.add_argument("workflow", help="path to the workflow .json (UI or API format)")
    p.add_argument("--out", default="kiln_export", help="folder to write into (default: ./kiln_export)")
    p.add_argument("--family", default=None,
                   help="model family (sd1, sdxl, sd3, flux1-dev, flux1-schnell, chroma, flux2, qwen-image, z-image, "
                        "lumina2, wan, hidream); default: read from the model file's tensor names")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=None, help="default: all")
    p.add_argument("--train-node", default=None, help="id of the Train node when the workflow has several")
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine in the accelerate config")
    p.add_argument("--num-machines", type=int, default=1, help="machines in the accelerate config")
    p.add_argument("--pipeline-stages", type=int, default=1, help="diffusion-pipe pipeline_stages")
    p.add_argument("--work-dir", default=None, help="as for run: where input/ and models/ are")
    p.set_defaults(func=_export)

"""``python -m kiln resize|merge|extract|convert|inspect``: the LoRA tools from the shell, on the same core calls."""
from __future__ import annotations

from pathlib import Path

from . import load_pack


class _LazyTensors(dict):
    """A safetensors file's tensors read on access, so a whole checkpoint never sits in memory."""

    def __init__(self, path):
        super().__init__()
        from safetensors import safe_open
        self.fh = safe_open(str(path), framework="pt", device="cpu")
        self.names = set(self.fh.keys())

    def __contains__(self, k):
        return k in self.names

    def __getitem__(self, k):
        return self.fh.get_tensor(k)


class _Renamed(dict):
    """``source`` seen through a name map (kohya module name -> key in the file)."""

    def __init__(self, source, names: dict):
        super().__init__()
        self.source, self.names = source, names

    def __contains__(self, k):
        return k in self.names and self.names[k] in self.source

    def __getitem__(self, k):
        return self.source[self.names[k]]


def _core():
    load_pack()
    import kiln.core as core  # noqa: F401
    return core


def _save_with_report(lora, report, output) -> int:
    """Write the tool's LoRA and print its per-layer report (resize and extract)."""
    from kiln.core.lora.io import save_lora
    from kiln.core.tools.resize import format_report
    save_lora(lora, output)
    print(format_report(report))
    print(f"wrote {output}")
    return 0


def _resize(args):
    _core()
    from kiln.core.lora.io import load_lora_file
    from kiln.core.tools.resize import ResizeSpec, resize_lora
    out, report = resize_lora(load_lora_file(args.input), ResizeSpec(args.method, args.value, args.max_rank))
    return _save_with_report(out, report, args.output)


def _merge(args):
    _core()
    from kiln.core.lora.io import load_lora_file, save_lora
    from kiln.core.tools.merge import merge_loras
    if len(args.weights) not in (0, len(args.inputs)):
        raise SystemExit("give one --weights value per input (or none for 1.0 each)")
    weights = args.weights or [1.0] * len(args.inputs)
    from kiln.core.net.blocks import parse_weights
    blocks = parse_weights(args.block_weights, "--block-weights")
    out = merge_loras([(load_lora_file(p), w) for p, w in zip(args.inputs, weights)], args.rank or None, blocks,
                      [Path(p).name for p in args.inputs])
    save_lora(out, args.output)
    print(f"merged {len(args.inputs)} LoRAs into {args.output}")
    return 0


def _extract(args):
    _core()
    from kiln.core.tools.extract import ExtractSpec, base_model_version_of_checkpoint, checkpoint_names, extract_lora

    for p in (args.tuned, args.base):
        if Path(p).suffix != ".safetensors":
            raise SystemExit(f"{p}: only .safetensors checkpoints are read (pickles can run code); convert it first.")
    a, b = _LazyTensors(args.tuned), _LazyTensors(args.base)
    lora, report = extract_lora(a, b, checkpoint_names(b.names), ExtractSpec(
        args.method, args.value, args.max_rank, args.conv_rank, clamp_quantile=args.clamp_quantile),
        base_model_version=base_model_version_of_checkpoint(b.names), title=Path(args.output).stem)
    return _save_with_report(lora, report, args.output)


def _convert(args):
    _core()
    from kiln.core.lora.io import load_lora_file, save_lora
    from kiln.core.tools.dora_convention import base_weight_keys, convert_dora, format_dora_report
    if Path(args.base).suffix != ".safetensors":
        raise SystemExit(f"{args.base}: only .safetensors base models are read (pickles can run code); convert it first.")
    base = _LazyTensors(args.base)
    out, reports = convert_dora(load_lora_file(args.input), _Renamed(base, base_weight_keys(base.names)),
                                args.dora_convention, args.rank or None)
    save_lora(out, args.output)
    print(format_dora_report(reports, args.dora_convention))
    print(f"wrote {args.output}")
    return 0


def _inspect(args):
    _core()
    from kiln.core.lora.io import load_lora_file
    from kiln.core.tools.lora_info import inspect_text
    lora = load_lora_file(args.input)
    print(inspect_text(lora, Path(args.input).name))
    if args.plot:
        from PIL import Image
        from kiln.core.lora.io import atomic_write_bytes
        from kiln.core.plots.bars import bar_chart
        from kiln.core.data.images import to_uint8
        from kiln.core.tools.lora_info import block_norms, module_infos
        import io
        image = Image.fromarray(to_uint8(bar_chart(block_norms(module_infos(lora)), "sum of delta norms per block")))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        atomic_write_bytes(args.plot, buf.getvalue())
        print(f"wrote {args.plot}")
    return 0


def register(sub) -> None:
    methods = ["fixed", "sv_ratio", "sv_fro", "sv_cumulative"]
    p = sub.add_parser("resize", help="resize a LoRA to a fixed or dynamic rank (exact for LoRA layers)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--method", choices=methods, default="fixed")
    p.add_argument("--value", type=float, default=32, help="rank for fixed; ratio/fraction for dynamic methods")
    p.add_argument("--max-rank", type=int, default=256)
    p.set_defaults(func=_resize)
    p = sub.add_parser("merge", help="merge LoRAs exactly (the weighted sum of their deltas)")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--weights", type=float, nargs="*", default=[])
    p.add_argument("--rank", type=int, default=0, help="compress to this rank (0: exact)")
    p.add_argument("--block-weights", default="", help="per-block factors, e.g. 'TE=0, OUT04=0.5, MID=1'")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_merge)
    p = sub.add_parser("extract", help="extract a LoRA from two checkpoints (tuned - base)")
    p.add_argument("tuned")
    p.add_argument("base")
    p.add_argument("output")
    p.add_argument("--method", choices=["fixed", "sv_fro", "sv_ratio"], default="fixed")
    p.add_argument("--value", type=float, default=32)
    p.add_argument("--max-rank", type=int, default=128)
    p.add_argument("--conv-rank", type=int, default=0)
    p.add_argument("--clamp-quantile", type=float, default=0.99)
    p.set_defaults(func=_extract)
    p = sub.add_parser("convert", help="write a LoRA's DoRA modules in another tool's convention (needs the base model)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--dora-convention", choices=["comfyui", "lycoris"], required=True,
                   help="comfyui: dora_scale per input channel (ComfyUI, A1111/Forge; what Kiln writes); "
                        "lycoris: per output channel (lycoris-lora's create_network_from_weights)")
    p.add_argument("--base", required=True, help="the base model (.safetensors checkpoint or diffusion-model file) "
                                                 "the LoRA was trained on: the conversion needs its weights")
    p.add_argument("--rank", type=int, default=0, help="cap the converted factors at this rank (lossy; 0: exact)")
    p.set_defaults(func=_convert)
    p = sub.add_parser("inspect", help="describe a LoRA file")
    p.add_argument("input")
    p.add_argument("--plot", help="also write the per-block norm chart to this PNG")
    p.set_defaults(func=_inspect)


"""Each algorithm's file layout, owned in one place: which keys say it is this algorithm, its rank, and the
full weight delta the host adds (scale included, float32). The tools (inspect, resize, merge, extract) and the
training modules in ``core/net/modules`` read a module's keys only through these classes.

Names are the training registry's (``lora``, ``loha``, ``lokr``, ``full``). Two are derived from the keys, not
separate layouts: ``locon`` (a LoRA with a conv kernel or a Tucker ``lora_mid``) and ``dora`` (a LoRA with a
``dora_scale``, see ``is_dora``). IA3 is saved as ``full`` (``diff``), see ``core/net/modules/ia3.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Factored:
    """delta = up @ down (scale folded in); 2-D views, plus the shape to restore (conv kernels)."""
    up: torch.Tensor       # (out, r)
    down: torch.Tensor     # (r, in * k * k)
    shape: tuple           # delta's full shape, (out, in) or (out, in, kh, kw)


def _tucker(t: torch.Tensor, down: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """LyCORIS Tucker form (LoHa/LoKr with hada_t*/lokr_t2): (out, in, kh, kw) from core t (r, r, kh, kw)."""
    return torch.einsum("i j k l, j r, i p -> p r k l", t, down, up)


def _scale(parts: dict, rank: int | None) -> float:
    return float(parts["alpha"]) / rank if ("alpha" in parts and rank) else 1.0


class LoRALayout:
    """``lora_down.weight`` (r, in[, kh, kw]), ``lora_up.weight`` (out, r[, 1, 1]), optional ``lora_mid.weight``
    (LoCon Tucker), ``alpha``; scale alpha / r."""
    name = "lora"
    keys = ("lora_down.weight", "lora_up.weight", "alpha")

    @staticmethod
    def matches(parts: dict) -> bool:
        return "lora_up.weight" in parts

    @staticmethod
    def rank(parts: dict) -> int:
        return parts["lora_down.weight"].shape[0]

    @staticmethod
    def kind(parts: dict) -> str:
        down = parts["lora_down.weight"]
        if "lora_mid.weight" in parts or (down.dim() == 4 and down.shape[-1] > 1):
            return "locon"
        return "dora" if is_dora(parts) else "lora"

    @staticmethod
    def factors(parts: dict, module: str = "") -> Factored:
        up, down = parts["lora_up.weight"].float(), parts["lora_down.weight"].float()
        rank = down.shape[0]
        if up.shape[1] != rank:
            raise ValueError(f"{module}: lora_up has rank {up.shape[1]} but lora_down has rank {rank}; "
                             "the file is damaged.")
        if "lora_mid.weight" in parts:
            # LoCon Tucker: down (r, in, 1, 1), mid (r, r, kh, kw). Folding mid into down keeps the rank and the
            # exact factored path: down'[a, i, k, l] = sum_b mid[a, b, k, l] down[b, i].
            mid = parts["lora_mid.weight"].float()
            down = torch.einsum("a b k l, b i -> a i k l", mid, down.reshape(rank, -1))
        out_dim = up.shape[0]
        shape = (out_dim, down.shape[1]) + tuple(down.shape[2:])
        return Factored(up.reshape(out_dim, rank) * _scale(parts, rank), down.reshape(rank, -1), shape)

    @classmethod
    def delta(cls, parts: dict, module: str = "") -> torch.Tensor:
        f = cls.factors(parts, module)
        return (f.up @ f.down).reshape(f.shape)


class LoHaLayout:
    """``hada_w1_a/_b``, ``hada_w2_a/_b`` (optional Tucker cores ``hada_t1/t2``), ``alpha``; delta is the
    Hadamard product of the two low-rank products, scale alpha / rank(w1_b)."""
    name = "loha"
    keys = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")

    @staticmethod
    def matches(parts: dict) -> bool:
        return "hada_w1_a" in parts

    @staticmethod
    def rank(parts: dict) -> int:
        return parts["hada_w1_b"].shape[0]

    @staticmethod
    def kind(parts: dict) -> str:
        return "loha"

    @classmethod
    def delta(cls, parts: dict, module: str = "") -> torch.Tensor:
        """2-D (out, in * kh * kw) without a Tucker core: the factors don't say the kernel shape."""
        p = {k: v.float() for k, v in parts.items()}
        if "hada_t1" in p:
            m1 = _tucker(p["hada_t1"], p["hada_w1_b"], p["hada_w1_a"])
            m2 = _tucker(p["hada_t2"], p["hada_w2_b"], p["hada_w2_a"])
        else:
            m1 = p["hada_w1_a"] @ p["hada_w1_b"]
            m2 = p["hada_w2_a"] @ p["hada_w2_b"]
        return m1 * m2 * _scale(p, cls.rank(p))


class LoKrLayout:
    """``lokr_w1`` or ``lokr_w1_a/_b``, ``lokr_w2`` or ``lokr_w2_a/_b`` (optional Tucker ``lokr_t2``), ``alpha``;
    delta kron(w1, w2). The host's reading (comfy weight_adapter/lokr.py): scaled by alpha / rank(w2_b) when w2
    is factored, else alpha / rank(w1_b), and by 1 when neither factor is low rank."""
    name = "lokr"

    @staticmethod
    def keys_for(w1_low: bool, w2_low: bool) -> tuple[str, ...]:
        return (("lokr_w1_a", "lokr_w1_b") if w1_low else ("lokr_w1",)) + \
               (("lokr_w2_a", "lokr_w2_b") if w2_low else ("lokr_w2",))

    @staticmethod
    def matches(parts: dict) -> bool:
        return "lokr_w1" in parts or "lokr_w1_a" in parts

    @staticmethod
    def rank(parts: dict) -> int:
        for key in ("lokr_w2_b", "lokr_w1_b"):
            if key in parts:
                return parts[key].shape[0]
        return 0

    @staticmethod
    def kind(parts: dict) -> str:
        return "lokr"

    @classmethod
    def delta(cls, parts: dict, module: str = "") -> torch.Tensor:
        p = {k: v.float() for k, v in parts.items()}
        w1 = p["lokr_w1"] if "lokr_w1" in p else p["lokr_w1_a"] @ p["lokr_w1_b"]
        if "lokr_w2" in p:
            w2 = p["lokr_w2"]
        else:
            w2 = (_tucker(p["lokr_t2"], p["lokr_w2_b"], p["lokr_w2_a"]) if "lokr_t2" in p
                  else p["lokr_w2_a"] @ p["lokr_w2_b"])
        if w2.dim() == 4:
            w1 = w1[:, :, None, None]
        return torch.kron(w1, w2) * _scale(p, cls.rank(p))


class FullLayout:
    """``diff`` (the whole delta weight) and optional ``diff_b`` (the bias delta): full fine-tunes and IA3."""
    name = "full"
    keys = ("diff",)

    @staticmethod
    def matches(parts: dict) -> bool:
        return "diff" in parts

    @staticmethod
    def rank(parts: dict) -> int:
        return 0

    @staticmethod
    def kind(parts: dict) -> str:
        return "full"

    @staticmethod
    def delta(parts: dict, module: str = "") -> torch.Tensor:
        return parts["diff"].float()


LAYOUTS = (LoHaLayout, LoKrLayout, LoRALayout, FullLayout)


def layout_of(parts: dict):
    """The layout class a module's keys are in, or None (a module with only ``diff_b``, or an unknown one)."""
    return next((layout for layout in LAYOUTS if layout.matches(parts)), None)


def is_dora(parts: dict) -> bool:
    """DoRA is LoRA keys plus a magnitude ``dora_scale``: a property of the module, not a layout of its own."""
    return "dora_scale" in parts


def algorithm_of(parts: dict) -> str:
    """The algorithm's name as a LoRA's reader reports it: lora, locon, dora, loha, lokr, full, or unknown."""
    layout = layout_of(parts)
    return layout.kind(parts) if layout else "unknown"


def rank_of(parts: dict) -> int:
    layout = layout_of(parts)
    return layout.rank(parts) if layout else 0


def module_delta(parts: dict, module: str = "") -> torch.Tensor:
    """The full delta a module applies (before DoRA normalisation), in float32, scale included."""
    layout = layout_of(parts)
    if layout is None:
        raise ValueError(f"{module}: no weight delta in its keys {sorted(parts)} (only diff_b/bias?); "
                         "Kiln's tools read lora_up/down, hada_*, lokr_* and diff.")
    return layout.delta(parts, module)


def lora_factors(parts: dict, module: str = "") -> Factored:
    return LoRALayout.factors(parts, module)

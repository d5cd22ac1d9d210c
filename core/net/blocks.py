"""Block names for block-wise rank and learning-rate weights (the IN/MID/OUT naming users know)."""
from __future__ import annotations

import re

from .families import UNET_FAMILIES, family_block

_IN = re.compile(r"(?:^|\.)input_blocks\.(\d+)\.")
_OUT = re.compile(r"(?:^|\.)output_blocks\.(\d+)\.")
_MID = re.compile(r"(?:^|\.)middle_block\.")


def block_of(host_name: str, is_text_encoder: bool, family: str = "") -> str:
    """UNet families: IN00../MID/OUT00..; transformer families: the family's blocks (DOUBLE00, SINGLE03,
    JOINT01, TRANSFORMER05, BLOCKS02, LAYERS04, ...; see core.net.families); the rest BASE."""
    if is_text_encoder:
        return "TE"
    if family and family not in UNET_FAMILIES and host_name.startswith("diffusion_model."):
        return family_block(host_name[len("diffusion_model."):], family) or "BASE"
    if m := _IN.search(host_name):
        return f"IN{int(m.group(1)):02d}"
    if _MID.search(host_name):
        return "MID"
    if m := _OUT.search(host_name):
        return f"OUT{int(m.group(1)):02d}"
    return "BASE"


def parse_weights(text: str, what: str) -> tuple[tuple[str, float], ...]:
    """'IN01=0.5, MID=1' (commas or new lines) -> (("IN01", 0.5), ("MID", 1.0)); names kept as written."""
    out = []
    for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out.append((name.strip(), float(value)))
        except ValueError:
            raise ValueError(f"{what}: {part!r} is not NAME=NUMBER (e.g. IN01=0.5, MID=1, OUT11=0, TE=0.5)") from None
    return tuple(out)

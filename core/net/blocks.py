"""Block names for block-wise rank and learning-rate weights (the IN/MID/OUT naming users know)."""
from __future__ import annotations

import re

_IN = re.compile(r"(?:^|\.)input_blocks\.(\d+)\.")
_OUT = re.compile(r"(?:^|\.)output_blocks\.(\d+)\.")
_MID = re.compile(r"(?:^|\.)middle_block\.")


def block_of(host_name: str, is_text_encoder: bool) -> str:
    if is_text_encoder:
        return "TE"
    if m := _IN.search(host_name):
        return f"IN{int(m.group(1)):02d}"
    if _MID.search(host_name):
        return "MID"
    if m := _OUT.search(host_name):
        return f"OUT{int(m.group(1)):02d}"
    return "BASE"

"""Sample prompts, including kohya's line syntax users already keep:
``a cat --n blurry --w 512 --h 768 --d 42 --l 7.5 --s 28`` (negative, width, height, seed, CFG, steps)."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SamplePrompt:
    prompt: str
    negative: str = ""
    width: int = 512
    height: int = 512
    seed: int = 0
    cfg: float = 7.0
    steps: int = 20


_OPT = re.compile(r"\s--(n|w|h|d|l|s)\s+")


def parse_prompt_line(line: str, defaults: SamplePrompt) -> SamplePrompt:
    parts = _OPT.split(" " + line.strip())
    prompt = parts[0].strip()
    fields = {}
    for flag, value in zip(parts[1::2], parts[2::2]):
        value = value.strip()
        try:
            if flag == "n":
                fields["negative"] = value
            elif flag == "w":
                fields["width"] = int(value)
            elif flag == "h":
                fields["height"] = int(value)
            elif flag == "d":
                fields["seed"] = int(value)
            elif flag == "l":
                fields["cfg"] = float(value)
            elif flag == "s":
                fields["steps"] = int(value)
        except ValueError:
            raise ValueError(f"sample prompt {line!r}: --{flag} needs a number, got {value!r}") from None
    return replace(defaults, prompt=prompt, **fields)


def parse_prompts(text: str, defaults: SamplePrompt) -> list[SamplePrompt]:
    """One prompt per non-empty line; lines starting with '#' are comments (as in kohya's prompt files)."""
    return [parse_prompt_line(line, defaults) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]

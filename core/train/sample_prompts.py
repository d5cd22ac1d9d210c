"""Sample prompts, including kohya's line syntax users already keep:
``a cat --n blurry --w 512 --h 768 --d 42 --l 7.5 --s 28`` (negative, width, height, seed, CFG, steps), and
musubi-tuner's ``--f 33`` (frames, for video families)."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..fields import setting


@dataclass(frozen=True)
class SamplePrompt:
    prompt: str
    negative: str = setting("", "Default negative prompt (a line's --n overrides it).")
    width: int = setting(512, "Default width.", min=64, max=4096, step=8)
    height: int = setting(512, "Default height.", min=64, max=4096, step=8)
    seed: int = setting(0, "Default seed (a line's --d overrides it).", min=0, max=2**31 - 1)
    cfg: float = setting(7.0, "Default CFG scale.", min=0.0, max=30.0, step=0.5)
    steps: int = setting(20, "Default sampling steps.", min=1, max=200)
    frames: int = 1     # video families: frames of the sample (a line's --f); still families ignore it


_OPT = re.compile(r"\s--(n|w|h|d|l|s|f)\s+")


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
            elif flag == "f":
                fields["frames"] = max(1, int(value))
        except ValueError:
            raise ValueError(f"sample prompt {line!r}: --{flag} needs a number, got {value!r}") from None
    return replace(defaults, prompt=prompt, **fields)


def parse_prompts(text: str, defaults: SamplePrompt) -> list[SamplePrompt]:
    """One prompt per non-empty line; lines starting with '#' are comments (as in kohya's prompt files)."""
    return [parse_prompt_line(line, defaults) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def sample_controls(images, prompts: int) -> tuple:
    """One picture per prompt from a batch of pictures (a graph's IMAGE): as many as there are prompts, or one for
    all of them; each kept as a batch of one."""
    if images is None:
        return ()
    if len(images) not in (1, prompts):
        raise ValueError(f"Kiln Sample Prompts: {len(images)} control images for {prompts} prompts; give one per "
                         "prompt, in order, or a single picture for all of them.")
    return tuple(images[j:j + 1] for j in (range(prompts) if len(images) > 1 else [0] * prompts))

"""Named pruning rules from the guides, as patterns on normalised tags (spaces, lower case).

Character LoRAs (the guides): "prune eye colors since they almost never change", "usually prune hair color",
"keep hair styles, but typically prune hair length". The trigger tag then absorbs those traits."""
from __future__ import annotations

import re

COLOURS = ("aqua", "black", "blonde", "blue", "brown", "green", "grey", "gray", "orange", "pink", "purple", "red",
           "silver", "white", "yellow", "light brown", "light blue", "light green", "light purple", "dark blue",
           "dark green", "dark red", "platinum blonde", "multicolored", "two-tone", "gradient", "streaked",
           "rainbow", "colored inner")
_C = "|".join(re.escape(c) for c in COLOURS)

EYE_COLOUR = re.compile(rf"^(({_C}) eyes|heterochromia)$")
HAIR_COLOUR = re.compile(rf"^({_C}) hair$")
HAIR_LENGTH = re.compile(r"^(very short|short|medium|long|very long|absurdly long) hair$")

# Each preset: what it prunes (hairstyles such as ponytail, twintails, braid, bangs are kept by all).
PRESETS: dict[str, tuple[re.Pattern, ...]] = {
    "character": (EYE_COLOUR, HAIR_COLOUR, HAIR_LENGTH),
}


def preset_prunes(preset: str, normalised_tag: str) -> bool:
    try:
        rules = PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown tag preset {preset!r}; known: {', '.join(PRESETS)}") from None
    return any(r.match(normalised_tag) for r in rules)

"""The family table in docs/family-table.md, written from what the settings matrix (test_family_matrix_host.py) did on
each host: every family fixture, what trains (its target table), the host's loader nodes for it, and per host the
settings that trained, were refused with a reason, or were skipped with the host's reason.

Each matrix run records its cells in .cache/family-results/<host>.json; ``python tests/family_table.py`` renders the
table from those files into the docs, and the matrix's last test fails when the docs' column for the host it ran on
says something else, so the table cannot drift from the tests."""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / ".cache" / "family-results"
DOC = REPO / "docs" / "family-table.md"
START, END = "<!-- family-table:start -->", "<!-- family-table:end -->"

# family fixture -> (what the user trains, the host's loader nodes that give it)
FAMILY_ROWS = {
    "sdxl": ("SDXL (Illustrious, NoobAI, Pony)", "Load Checkpoint"),
    "sd3": ("SD3 / SD3.5", "Load Diffusion Model, TripleCLIPLoader or CLIPLoader (sd3), Load VAE"),
    "flux1-dev": ("Flux.1 dev", "Load Diffusion Model, DualCLIPLoader (flux), Load VAE"),
    "flux1-schnell": ("Flux.1 schnell", "Load Diffusion Model, DualCLIPLoader (flux), Load VAE"),
    "chroma": ("Chroma", "Load Diffusion Model, CLIPLoader (chroma: t5xxl), Load VAE"),
    "flux2": ("FLUX.2 dev / klein", "Load Diffusion Model, CLIPLoader (flux2), Load VAE"),
    "qwen-image": ("Qwen-Image", "Load Diffusion Model, CLIPLoader (qwen_image), Load VAE"),
    "z-image": ("Z-Image (Turbo, Base)", "Load Diffusion Model, CLIPLoader (lumina2: qwen_3_4b), Load VAE"),
    "lumina2": ("Lumina 2.0", "Load Diffusion Model, CLIPLoader (lumina2: gemma), Load VAE"),
    "wan": ("Wan 2.1 / Wan 2.2 A14B (images)", "Load Diffusion Model, CLIPLoader (wan: umt5_xxl), Load VAE"),
    "wan2.2-5b": ("Wan 2.2 TI2V 5B (images)", "Load Diffusion Model, CLIPLoader (wan: umt5_xxl), Load VAE"),
    "hidream": ("HiDream I1", "Load Diffusion Model, QuadrupleCLIPLoader, Load VAE"),
}
SETTING_NAMES = {"batch2": "batch 2 (mixed buckets)", "attn": "attn", "full": "full", "text_encoder": "text encoder",
                 "bf16": "bf16 base", "fp8": "fp8 base", "checkpointing": "checkpointing", "resume": "resume"}


def host_label(host_id: str) -> str:
    """'2026-07-21-d0fec2ef' -> 'ComfyUI 2026-07-21'; another ComfyUI keeps its folder's name."""
    return "ComfyUI " + host_id[:10] if host_id[:4].isdigit() else host_id


def cell_summary(cells: dict[str, str]) -> str:
    """One family's settings on one host: 'all 8 settings', or how many trained and why the others did not (with a
    note where a setting trained with a stand-in)."""
    if not cells:
        return "not run"
    trained = [s for s, r in cells.items() if r.startswith("trained")]
    others = {s: r for s, r in cells.items() if not r.startswith("trained")}
    notes = {s: r[len("trained"):].strip() for s, r in cells.items() if r.startswith("trained") and r != "trained"}
    if not trained and len(set(others.values())) == 1:
        return next(iter(others.values()))
    text = f"all {len(trained)} settings" if not others else f"{len(trained)} of {len(cells)} settings"
    for setting, reason in {**others, **notes}.items():
        text += f"; {SETTING_NAMES.get(setting, setting)}: {reason}"
    return text


def load_results() -> dict[str, dict[str, dict[str, str]]]:
    """host id -> family -> setting -> outcome, from every recorded run (newest file per host)."""
    out = {}
    for path in sorted(RESULTS.glob("*.json")):
        out[path.stem] = json.loads(path.read_text())
    return out


def render(results: dict[str, dict[str, dict[str, str]]]) -> str:
    hosts = sorted(results, reverse=True)
    head = "| Family | Loader nodes | " + " | ".join(host_label(h) for h in hosts) + " |"
    rows = [head, "|" + "---|" * (2 + len(hosts))]
    for family, (name, loaders) in FAMILY_ROWS.items():
        cells = [cell_summary(results[h].get(family, {})) for h in hosts]
        rows.append(f"| {name} (`{family}`) | {loaders} | " + " | ".join(cells) + " |")
    settings = ", ".join(SETTING_NAMES.values())
    return (f"{START}\nEach cell trains 2 steps, saves, reloads through LoraLoader with every key and changes the "
            f"model's output; settings: {settings}, each with a training-time preview at the requested size.\n\n"
            + "\n".join(rows) + f"\n{END}")


def documented_cells(host_id: str) -> dict[str, str] | None:
    """The docs' cell text per family for ``host_id``'s column; None where the docs have no column for it."""
    if not DOC.is_file():
        return None
    lines = [l for l in DOC.read_text().splitlines() if l.startswith("| ")]
    if not lines:
        return None
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    if host_label(host_id) not in header:
        return None
    col = header.index(host_label(host_id))
    out = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        family = cells[0].rsplit("`", 2)[-2] if "`" in cells[0] else cells[0]
        out[family] = cells[col]
    return out


def write_doc() -> Path:
    results = load_results()
    if not results:
        raise SystemExit(f"no matrix results in {RESULTS}: run the matrix first "
                         "(pytest tests/test_family_matrix_host.py on each host)")
    text = DOC.read_text() if DOC.is_file() else (
        "# Families: what trains where\n\nWritten by `python tests/family_table.py` from the settings matrix's last "
        "run on each host (tests/test_family_matrix_host.py); the matrix fails when this table says otherwise.\n\n"
        f"{START}\n{END}\n")
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    DOC.write_text(before + render(results) + after)
    return DOC


if __name__ == "__main__":
    print(f"wrote {write_doc().relative_to(REPO)}")
    sys.exit(0)

"""Finding the images the way kohya finds them, with their raw captions.

Folder convention (kohya's DreamBooth layout): ``root/N_name/*.png`` - N repeats per epoch, ``name`` the
class text an image trains on when it has no caption. Several N_name folders are several concepts. A flat
folder of images uses the ``repeats`` input. Regularization images come the same way from ``reg_path``."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .caption_files import caption_warnings, captions_for
from .config import DatasetConfig, DatasetError
from .clips import VIDEO_EXTENSIONS, is_clip, is_frame_folder
from .images import IMAGE_EXTENSIONS

_CONCEPT_DIR = re.compile(r"^(\d+)_(.+)$")


@dataclass(frozen=True)
class Concept:
    folder: Path
    repeats: int
    class_text: str


@dataclass(frozen=True)
class FoundImage:
    path: Path
    caption: str            # raw text (from the file, the phrase, or the folder's class text)
    repeats: int
    concept: str            # the folder name


def is_image(p: Path) -> bool:
    # Hidden files (macOS "._x.jpg" resource forks, editor temp files) are not images; masks are not samples.
    return (p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
            and not p.name.lower().endswith(".mask.png"))


def find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image(p))


def is_media(p: Path) -> bool:
    """A training sample: an image, a video clip, or a folder of numbered frames (core.data.clips)."""
    return is_image(p) or (is_clip(p) and not p.name.startswith("."))


def find_media(folder: Path, skip: tuple = ()) -> list[Path]:
    """Images, video files and folders of numbered frames in ``folder``; the subfolders named in ``skip`` (an edit
    dataset's control folders, whose numbered pictures would read as frames) are not media."""
    return sorted(p for p in folder.iterdir() if not (p.is_dir() and p.name in skip) and is_media(p))


def images_under(root: Path, who: str) -> list[Path]:
    """Every image in a folder and its subfolders, sorted (what the tagger and the captioner label); ``who``
    names the node in the errors."""
    if not root.is_dir():
        raise ValueError(f"{who}: {root} is not a folder; give a folder of images or connect a dataset.")
    paths = sorted(p for p in root.rglob("*") if is_image(p))
    if not paths:
        raise ValueError(f"{who}: no images in {root}.")
    return paths


def find_concepts(root: Path, flat_repeats: int, warn, skip: tuple = ()) -> list[Concept]:
    """The N_name folders under ``root``, or ``root`` itself as one concept when it holds the images. Folders
    named in ``skip`` (an edit dataset's control folders) are neither concepts nor reported as ignored."""
    # A folder of numbered frames is a clip (found with the loose media), not a concept.
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in skip
                     and (_CONCEPT_DIR.match(p.name) or not is_frame_folder(p)))
    concepts, ignored = [], []
    for d in subdirs:
        m = _CONCEPT_DIR.match(d.name)
        if m:
            if int(m.group(1)) == 0:
                warn(f"Kiln: {d} has 0 repeats and is skipped (rename it e.g. to 1_{m.group(2)}).")
                continue
            concepts.append(Concept(d, int(m.group(1)), m.group(2).strip()))
        elif any(is_media(f) for f in d.iterdir()):
            ignored.append(d.name)
    loose = find_media(root)
    if concepts:
        if ignored:
            warn(f"Kiln: {root}: ignored image folders not named N_name: {ignored} "
                 f"(rename e.g. to '10_{ignored[0]}' to train them with 10 repeats).")
        if loose:
            warn(f"Kiln: {root}: ignored {len(loose)} image(s) beside the N_name folders (e.g. {loose[0].name}); "
                 "move them into a concept folder to train them.")
        return concepts
    if loose:
        m = _CONCEPT_DIR.match(root.name)
        if m and int(m.group(1)) > 0:
            # The concept folder itself was given (a common mix-up): use it with its own N.
            warn(f"Kiln: {root} is itself an N_name folder: training it with its {m.group(1)} repeats and class "
                 f"text '{m.group(2)}' (the repeats input is ignored). Usually you give its parent folder.")
            return [Concept(root, int(m.group(1)), m.group(2).strip())]
        if ignored:
            warn(f"Kiln: {root}: subfolders {ignored} are not N_name folders and are ignored.")
        return [Concept(root, flat_repeats, root.name)]
    if ignored:
        raise DatasetError(f"{root} has image folders {ignored} but none is named N_name. Rename them as kohya "
                           f"expects, e.g. '{root / ('10_' + ignored[0])}' (10 = repeats per epoch, the rest is "
                           "the class text used for images without captions).")
    return []


def scan(root_text: str, repeats: int, is_reg: bool, cfg: DatasetConfig, warn,
         notes: dict | None = None) -> list[FoundImage]:
    """Every image found under ``root_text`` with its raw caption. Caption notes are gathered in ``notes``
    (warned about once the images are read) or warned about at once."""
    root = Path(root_text).expanduser()
    what = "regularization folder" if is_reg else "dataset folder"
    if not str(root_text).strip():
        raise DatasetError(f"no {what} given: set the path to the folder that holds your N_name subfolders "
                           "(e.g. 10_mychar) or a folder of images.")
    if not root.is_dir():
        raise DatasetError(f"{what} {root} does not exist. Give the folder that holds your N_name subfolders "
                           "(e.g. 10_mychar) or a folder of images.")
    found, own_notes = [], notes is None
    notes = {} if notes is None else notes
    from .controls import control_base, control_names
    base = control_base(cfg.controls)
    controls = tuple(control_names(base)) if base else ()
    for concept in find_concepts(root, repeats, warn, controls):
        images = find_media(concept.folder, controls)
        captions = captions_for(concept.folder, concept.class_text, images, cfg, notes)
        found += [FoundImage(img, caption, concept.repeats, concept.folder.name) for img, caption in zip(images, captions)]
    if not found:
        raise DatasetError(f"no images found in {what} {root} or in N_name subfolders of it (kohya's layout: "
                           f"{root / '10_mychar' / 'image.png'}). Supported: "
                           f"{', '.join(sorted(set(IMAGE_EXTENSIONS) | set(VIDEO_EXTENSIONS)))}.")
    if own_notes:
        caption_warnings(notes, cfg, warn)
    return found

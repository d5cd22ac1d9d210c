"""What each concept folder holds for the export (images, video clips, edit controls), and the dataset keys the
trainers read for clips and controls.

Key names, from each tool's documentation:
- musubi-tuner docs/dataset_config.md: a [[datasets]] entry is an image dataset (``image_directory``) or a video
  dataset (``video_directory``: video files only, no frame folders) with ``target_frames`` (a list),
  ``frame_extraction`` (head / chunk / slide / uniform / full), ``frame_stride`` (slide), ``frame_sample`` (uniform),
  ``max_frames`` (full, 129 by default) and ``source_fps``; edit datasets add ``control_directory`` (the controls by
  the target's stem; several controls are numbered ``<stem>_0``, ``<stem>_1`` in that one folder) and
  ``control_resolution = [W, H]`` (default: the control is resized like its target).
- diffusion-pipe examples/dataset.toml: ``frame_buckets`` (1 for images, then the clip lengths; a clip goes to the
  longest bucket it fills); examples/main_example.toml: ``video_clip_mode`` (single_beginning, single_middle);
  examples/flux_kontext_dataset.toml: ``control_path`` per [[directory]] (one control, same stem as the target)."""
from __future__ import annotations

from pathlib import Path

from ..data.clips import encodable_frames, is_clip
from ..data.controls import control_base, control_dirs, control_side, family_control_resolution
from ..data.scan import find_media, is_image

VIDEO_TEMPORAL = 4   # musubi-tuner's and diffusion-pipe's Wan / HunyuanVideo clips are 4k+1 frames long


def concept_media(folder: Path, controls_setting: str) -> dict:
    """{"images": bool, "clips": bool, "frame_folders": bool, "controls": [control folder paths]} for one concept
    folder, with its control folders (Load Dataset's ``controls``) left out of the media."""
    base = control_base(controls_setting)
    controls = control_dirs(folder, base) if base else []
    media = find_media(folder, tuple(p.name for p in controls))
    return {"images": any(is_image(p) for p in media), "clips": any(is_clip(p) and p.is_file() for p in media),
            "frame_folders": any(p.is_dir() for p in media), "controls": [str(p) for p in controls]}


def clip_frames(dataset) -> int:
    return encodable_frames(dataset.target_frames, VIDEO_TEMPORAL)


def musubi_video_keys(dataset, notes: list) -> dict:
    """The video-dataset keys of one musubi-tuner [[datasets]] entry, from Load Dataset's clip settings."""
    d = dataset
    keys = {"target_frames": [clip_frames(d)], "frame_extraction": d.frame_extraction,
            "frame_stride": d.frame_stride if d.frame_extraction == "slide" else None,
            "frame_sample": d.frame_sample if d.frame_extraction == "uniform" else None}
    if d.frame_extraction == "full":
        notes.append("musubi-tuner trims 'full' clips to max_frames (129 by default); Kiln uses whole clips: set "
                     "max_frames in musubi_dataset.toml to your longest clip")
    if d.frame_extraction == "chunk" and clip_frames(d) == 1:
        notes.append("musubi-tuner's 'chunk' with target_frames 1 extracts every frame; raise target_frames")
    if d.target_fps > 0:
        notes.append(f"Kiln resamples clips to {d.target_fps:g} fps; musubi-tuner skips frames to the model's own "
                     "rate (16 Wan, 24 HunyuanVideo) when told the clips' rate: add source_fps = <your clips' fps, "
                     "e.g. 30.0> to each video dataset in musubi_dataset.toml")
    return keys


def musubi_control_keys(concept: dict, dataset, family: str, notes: list) -> dict:
    """control_directory / control_resolution for an edit concept (empty without controls)."""
    controls = concept["controls"]
    if not controls:
        return {}
    if len(controls) > 1:
        notes.append(f"{concept['dir']}: musubi-tuner reads several controls from one control_directory, numbered "
                     f"<stem>_0, <stem>_1 ...; merge {', '.join(Path(c).name for c in controls)} into one folder "
                     "that way (the export points at the first only)")
    side = control_side(family_control_resolution(dataset.control_resolution, family))
    return {"control_directory": controls[0], "control_resolution": [side, side] if side else None}


def diffusion_pipe_frame_buckets(concepts: list, dataset, notes: list) -> list | None:
    """diffusion-pipe's frame_buckets for a dataset with clips (None without): images, then Kiln's clip length."""
    if not any(c["clips"] or c["frame_folders"] for c in concepts):
        return None
    if dataset.frame_extraction != "head":
        notes.append(f"diffusion-pipe takes one clip per video (video_clip_mode single_beginning / single_middle); "
                     f"Kiln's frame_extraction '{dataset.frame_extraction}' is written as single_beginning")
    if dataset.target_fps > 0:
        notes.append(f"diffusion-pipe reads clips at their own rate; Kiln resamples them to {dataset.target_fps:g} "
                     "fps: convert the clips first (ffmpeg -r)")
    return [1, clip_frames(dataset)]


def media_notes(concepts: list, tool: str, notes: list, clips: bool = True, controls: bool = True) -> None:
    """Notes for what a tool cannot read from Kiln's folders: frame folders (musubi-tuner), and clips or edit
    controls where the tool (or its export) has no such dataset (``clips`` / ``controls`` False)."""
    if any(c["frame_folders"] for c in concepts) and tool == "musubi-tuner":
        notes.append("musubi-tuner's video_directory reads video files only: convert the folders of numbered frames "
                     "to .mp4 (or list them in a video_jsonl_file)")
    if not clips and any(c["clips"] or c["frame_folders"] for c in concepts):
        notes.append(f"{tool} trains images only here: the dataset's video clips are left out")
    if not controls and any(c["controls"] for c in concepts):
        notes.append(f"{tool} has no edit (control image) dataset for this family: the control folders are left out")

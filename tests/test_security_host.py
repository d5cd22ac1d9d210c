"""No way in through /prompt: queued as an attacker would queue them (API prompts through the host's real
validation and executor), Kiln's nodes read and write only inside ComfyUI's input folder, write and return caption
files only, and say why they refuse without naming the machine's paths."""
import pytest

from tiny_tagger import write_tiny_tagger


@pytest.fixture
def no_extra_roots(host, monkeypatch):
    from kiln.core.paths import EXTRA_ROOTS_ENV
    monkeypatch.delenv(EXTRA_ROOTS_ENV, raising=False)


@pytest.fixture
def outside(tmp_path):
    """A folder outside ComfyUI's input folder holding an image, a script and a config with a secret."""
    from PIL import Image
    folder = tmp_path / "victim"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 0, 0)).save(folder / "cfg.png")
    (folder / "cfg.json").write_text('{"api_key": "sk-secret"}')
    (folder / "cfg.txt").write_text("kept caption")
    return folder


def _tagger_prompt(folder, mode, ext):
    return {"1": {"class_type": "KilnTagger", "inputs": {
        "model": "kiln-sec-tagger", "folder": folder, "general_threshold": 0.05, "character_threshold": 0.5,
        "caption_mode": mode, "caption_extension": ext}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def _run(prompt):
    from cli import runner
    try:
        return runner.run_prompt(prompt)
    except runner.WorkflowError as exc:       # refused at validation
        return exc


def _error_text(result) -> str:
    """The refusal as the client sees it (the executor's exception message, or the validation error)."""
    return str(result) if isinstance(result, Exception) else str((result.error or {}).get("exception_message"))


def test_tagger_cannot_write_scripts_or_leave_the_input_folder(host, no_extra_roots, outside):
    import folder_paths
    from pathlib import Path
    write_tiny_tagger(Path(folder_paths.get_folder_paths("wd14_tagger")[0]), name="kiln-sec-tagger")
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    for folder, ext in ((str(outside), ".py"), (str(outside), ".txt"), ("../../victim", ".json")):
        result = _run(_tagger_prompt(folder, "overwrite", ext))
        assert isinstance(result, Exception) or not result.success, (folder, ext)
        text = _error_text(result)
        assert "outside ComfyUI's input folder" in text or "not a caption extension" in text, text
        assert str(host.input_dir()) not in text   # the rule, not the machine's folders
    # keep mode with a non-caption extension would have returned cfg.json's text: refused, nothing returned.
    result = _run(_tagger_prompt(str(outside), "keep", ".json"))
    assert isinstance(result, Exception) or not result.success
    assert "sk-secret" not in str(getattr(result, "outputs", "")) + _error_text(result)
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before, "a file outside input/ changed"
    # Inside the input folder, with a caption extension, the same node works.
    inside = host.input_dir() / "sec_ds"
    inside.mkdir(exist_ok=True)
    (outside / "cfg.png").replace(inside / "cfg.png")
    result = _run(_tagger_prompt("sec_ds", "overwrite", ".txt"))
    assert result.success, result.error
    assert (inside / "cfg.txt").is_file()


@pytest.mark.parametrize("path", ["ABS", "~", "../.."])
def test_load_dataset_reads_only_inside_the_input_folder(host, no_extra_roots, outside, path):
    given = str(outside) if path == "ABS" else path
    prompt = {"1": {"class_type": "KilnLoadDataset", "inputs": {
        "path": given, "resolution": 64, "caption_source": "files", "caption_extension": ".txt", "repeats": 1}},
        "2": {"class_type": "KilnDatasetPreview", "inputs": {"dataset": ["1", 0], "per_bucket": 4, "batch_size": 1,
                                                              "epochs": 1}}}
    result = _run(prompt)
    assert isinstance(result, Exception) or not result.success
    text = _error_text(result)
    assert "outside ComfyUI's input folder" in text and str(host.input_dir()) not in text, text
    assert not getattr(result, "outputs", {}), "a preview of images outside input/ came back"

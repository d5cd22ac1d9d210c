"""Host-free captioning logic: combining tags and captions, prompt templates, model folders, image fitting."""
import json

import pytest
from PIL import Image

from kiln.core.caption.combine import clean_caption, combine_caption
from kiln.core.caption.models import CaptionModelMissing, ensure_model, family_of, local_names
from kiln.core.caption.instructions import chat_messages, florence_task, prompt_text
from kiln.core.caption.vlm import fit_image


def test_combine_orders_dedupes_and_puts_the_trigger_first():
    cap = "A woman in a red dress stands on a beach."
    tags = "red_dress, 1girl, Red Dress, zyx, beach, smile"
    assert combine_caption(cap, tags, "tags first", "zyx") == \
        "zyx, 1girl, smile, A woman in a red dress stands on a beach."
    assert combine_caption(cap, tags, "caption first", "zyx", drop_tags_in_caption=False) == \
        "zyx, A woman in a red dress stands on a beach., red_dress, 1girl, beach, smile"
    assert combine_caption(cap, tags, "caption only", "zyx") == "zyx, " + cap
    # a caption that already starts with the trigger doesn't get it twice
    assert combine_caption("zyx, a cat", "", "caption only", "zyx") == "zyx, a cat"
    assert combine_caption("", "a, b", "tags first", "") == "a, b"
    with pytest.raises(ValueError, match="combine mode"):
        combine_caption(cap, tags, "tags last")


def test_clean_caption_is_one_line():
    assert clean_caption('  "A cat\n\non a   mat."  ') == "A cat on a mat."


def test_prompts_per_family():
    assert "Booru" in prompt_text("booru")
    assert prompt_text("custom", " say hi ") == "say hi"
    with pytest.raises(ValueError, match="custom_prompt"):
        prompt_text("custom", "")
    with pytest.raises(ValueError, match="template"):
        prompt_text("poem")
    assert florence_task("short", "", "Florence-2-base") == "<CAPTION>"
    assert florence_task("booru", "", "Florence-2-base-PromptGen-v2.0") == "<GENERATE_TAGS>"
    assert florence_task("booru", "", "Florence-2-base") == "<MORE_DETAILED_CAPTION>"   # base has no tag task
    assert chat_messages("llava", "x")[0]["role"] == "system"
    assert chat_messages("qwen2_5_vl", "x")[0]["content"][0] == {"type": "image"}


def test_model_folders_and_offline_error(tmp_path, monkeypatch):
    (tmp_path / "Florence-2-base").mkdir()
    (tmp_path / "Florence-2-base" / "config.json").write_text(json.dumps({"model_type": "florence2"}))
    (tmp_path / "Qwen-VL" / "my-qwen").mkdir(parents=True)
    (tmp_path / "Qwen-VL" / "my-qwen" / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (tmp_path / "text-only-llm").mkdir()   # a prompt-writing node's model: can't caption, not listed
    (tmp_path / "text-only-llm" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert local_names([tmp_path]) == ["Florence-2-base", "Qwen-VL/my-qwen"]
    assert ensure_model("Qwen-VL/my-qwen", [tmp_path]) == tmp_path / "Qwen-VL" / "my-qwen"
    assert family_of(tmp_path / "Florence-2-base") == "florence2"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(CaptionModelMissing, match=r"offline.*Qwen/Qwen2.5-VL-3B-Instruct"):
        ensure_model("Qwen2.5-VL-3B-Instruct", [tmp_path], offline=True, cache_dir=str(tmp_path / "hub-cache"))
    with pytest.raises(CaptionModelMissing, match="not found"):
        ensure_model("someone-elses-model", [tmp_path])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.*config"):
        family_of(tmp_path / "broken")


def test_fit_image_only_shrinks():
    assert fit_image(Image.new("RGB", (1600, 800)), 768).size == (768, 384)
    assert fit_image(Image.new("RGB", (100, 50)), 768).size == (100, 50)
    assert fit_image(Image.new("RGB", (1600, 800)), 0).size == (1600, 800)


def test_a_text_only_model_is_refused_with_the_reason(tmp_path):
    from kiln.core.caption.vlm import CaptionModelError, Captioner
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CaptionModelError, match="no image-text-to-text model of type 'bert'"):
        Captioner(tmp_path)

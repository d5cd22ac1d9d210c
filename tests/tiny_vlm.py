"""Tiny random vision-language captioners saved as real `transformers` model folders (config, weights,
processor, tokenizer, chat template), so the captioner loads them exactly as it loads a downloaded model.

Every family the captioner supports has a builder: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA (JoyCaption's
architecture: SigLIP vision tower + Llama) and Florence-2 (DaViT + BART). The tokenizer is byte-level BPE
with no merges (256 byte tokens plus each family's special tokens): any text encodes and decodes, and the
vocabulary stays a few hundred rows. Weights are random with a fixed seed; nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import torch

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<image>", "<pad>"]
LLAMA_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
BART_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<image>"]


def _tokenizer(specials: list[str], **named):
    """Byte-level BPE without merges: 256 byte tokens, then the special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def _ids(tokenizer, *tokens):
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]


def _save(folder: Path, model, processor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _text_config(vocab: int, **extra) -> dict:
    return dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, **extra)


def _qwen(folder: Path, family: str, seed: int) -> Path:
    from transformers import AutoModelForImageTextToText
    tok = _tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.padding_side = "left"
    image_id, video_id, start_id, end_id = _ids(tok, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                "<|vision_end|>")
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    ids = dict(image_token_id=image_id, video_token_id=video_id, vision_start_token_id=start_id,
               vision_end_token_id=end_id)
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig, Qwen2VLImageProcessor as ImageProcessor, Qwen2VLProcessor as Proc
        cfg = Qwen2VLConfig(text_config=_text_config(len(tok), rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},
                                                     eos_token_id=eos),
                            vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2,
                                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
                            **ids)
        patch = 14
    elif family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2VLImageProcessor as ImageProcessor, Qwen2_5_VLProcessor as Proc
        cfg = Qwen2_5_VLConfig(text_config=_text_config(len(tok), rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},
                                                        eos_token_id=eos),
                               vision_config=dict(depth=2, hidden_size=32, out_hidden_size=32, intermediate_size=64,
                                                  num_heads=2, patch_size=14, spatial_merge_size=2,
                                                  temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]),
                               **ids)
        patch = 14
    else:   # qwen3_vl
        from transformers import Qwen3VLConfig, Qwen2VLImageProcessor as ImageProcessor, Qwen3VLProcessor as Proc
        cfg = Qwen3VLConfig(text_config=_text_config(len(tok), head_dim=8, eos_token_id=eos,
                                                     rope_scaling={"rope_type": "default", "mrope_section": [2, 1, 1],
                                                                   "mrope_interleaved": True}),
                            vision_config=dict(depth=2, hidden_size=32, out_hidden_size=32, intermediate_size=64,
                                               num_heads=2, patch_size=16, spatial_merge_size=2,
                                               temporal_patch_size=2, num_position_embeddings=64,
                                               deepstack_visual_indexes=[1]),
                            **ids)
        patch = 16
    cfg.eos_token_id = eos
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(cfg)
    unit = patch * 2
    images = ImageProcessor(min_pixels=unit * unit, max_pixels=4 * unit * unit, patch_size=patch,
                            merge_size=2, temporal_patch_size=2)
    # The processors insist on a video processor, though captioning never uses one.
    if family == "qwen3_vl":
        from transformers import Qwen3VLVideoProcessor as Video
    else:
        from transformers import Qwen2VLVideoProcessor as Video
    extra = {"video_processor": Video(patch_size=patch, merge_size=2, temporal_patch_size=2)}
    processor = Proc(image_processor=images, tokenizer=tok, chat_template=QWEN_TEMPLATE, **extra)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tok.pad_token_id
    return _save(folder, model, processor)


def _llava(folder: Path, seed: int) -> Path:
    from transformers import (AutoModelForImageTextToText, LlavaConfig, LlavaProcessor, SiglipImageProcessor)
    tok = _tokenizer(LLAMA_SPECIALS, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<pad>")
    tok.padding_side = "left"
    image_id, eos = _ids(tok, "<image>", "<|eot_id|>")
    cfg = LlavaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14),
        text_config=dict(model_type="llama", **_text_config(len(tok), eos_token_id=eos)),
        image_token_index=image_id, vision_feature_select_strategy="full", vision_feature_layer=-2,
        projector_hidden_act="gelu")
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(cfg)
    images = SiglipImageProcessor(size={"height": 28, "width": 28})
    processor = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=14,
                               vision_feature_select_strategy="full", chat_template=LLAMA_TEMPLATE,
                               image_token="<image>")
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tok.pad_token_id
    return _save(folder, model, processor)


def _florence2(folder: Path, seed: int) -> Path:
    from transformers import AutoModelForImageTextToText, CLIPImageProcessor, Florence2Config, Florence2Processor
    tok = _tokenizer(BART_SPECIALS, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                     extra_special_tokens={"image_token": "<image>"})
    image_id = tok.convert_tokens_to_ids("<image>")
    cfg = Florence2Config(
        vision_config=dict(depths=[1, 1], patch_size=[7, 3], patch_stride=[4, 2], patch_padding=[3, 1],
                           patch_prenorm=[False, True], embed_dim=[16, 32], num_heads=[2, 2], num_groups=[2, 2],
                           window_size=2, projection_dim=32, max_temporal_embeddings=4, max_position_embeddings=8),
        text_config=dict(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                         encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                         decoder_ffn_dim=64, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         decoder_start_token_id=tok.eos_token_id, forced_bos_token_id=None,
                         forced_eos_token_id=None),
        image_token_id=image_id)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(cfg)
    images = CLIPImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32},
                                do_center_crop=False, image_seq_length=17)
    processor = Florence2Processor(image_processor=images, tokenizer=tok)
    return _save(folder, model, processor)


FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava", "florence2")


def write_tiny_vlm(folder: Path, family: str, seed: int = 0) -> Path:
    """A tiny random model of ``family`` (one of FAMILIES) saved at ``folder``; returns the folder."""
    folder = Path(folder)
    if family.startswith("qwen"):
        return _qwen(folder, family, seed)
    if family == "llava":
        return _llava(folder, seed)
    if family == "florence2":
        return _florence2(folder, seed)
    raise ValueError(f"no tiny builder for {family!r}; one of {FAMILIES}")

"""Prompt templates for captioning, per model family.

Chat models (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-style such as JoyCaption) get an instruction through
their own chat template; Florence-2 is prompted with a task token instead of free text."""
from __future__ import annotations

TEMPLATES = ("training", "short", "long", "booru", "custom")

CHAT_PROMPTS = {
    "short": "Write a short, one-sentence caption for this image.",
    "long": "Write a long, detailed description of this image.",
    "booru": "Write a comma-separated list of Booru-like tags for this image.",
    # What LoRA guides ask of a captioner for natural-language families: the visible content in plain
    # sentences, no meta talk about "the image", so the caption reads like a text-to-image prompt.
    "training": ("Write a descriptive caption for this image, as a prompt for a text-to-image model: describe "
                 "the subject, clothing, pose, setting, lighting and style in plain sentences. Do not start with "
                 "'This image' or mention that it is an image."),
}

# Florence-2 task tokens. <GENERATE_TAGS> exists only in the PromptGen fine-tunes; the base models get
# their most detailed caption instead.
FLORENCE_TASKS = {"short": "<CAPTION>", "long": "<MORE_DETAILED_CAPTION>", "training": "<DETAILED_CAPTION>",
                  "booru": "<GENERATE_TAGS>"}

# JoyCaption (LLaVA-style) was trained with this system line; other chat families bring their own default.
LLAVA_SYSTEM = "You are a helpful image captioner."


def prompt_text(template: str, custom: str = "") -> str:
    """The instruction for a chat model."""
    if template not in TEMPLATES:
        raise ValueError(f"caption template {template!r}: use one of {', '.join(TEMPLATES)}")
    if template == "custom":
        if not custom.strip():
            raise ValueError("caption template 'custom' needs a prompt: write it in custom_prompt")
        return custom.strip()
    return CHAT_PROMPTS[template]


def florence_task(template: str, custom: str, model_name: str) -> str:
    """The task string for Florence-2: a task token, or the custom prompt as given (PromptGen variants take
    tokens such as <MIXED_CAPTION>)."""
    if template == "custom":
        return prompt_text(template, custom)
    if template == "booru" and "promptgen" not in model_name.lower():
        return FLORENCE_TASKS["long"]
    prompt_text(template)   # validates the name
    return FLORENCE_TASKS[template]


def chat_messages(family: str, instruction: str) -> list[dict]:
    """One user turn holding the image and the instruction (plus JoyCaption's system line)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
    if family == "llava":
        messages.insert(0, {"role": "system", "content": LLAVA_SYSTEM})
    return messages

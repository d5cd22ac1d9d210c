"""Captioning with vision-language models (transformers): prompt templates, model folders and the hub,
the batched captioner, and combining tags with a natural-language caption."""

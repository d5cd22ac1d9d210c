"""LoRA tools: low-rank maths, resize, merge, extract, compare and inspect (host-free)."""

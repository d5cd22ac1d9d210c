"""The ground floor: the in-memory LoRA value, file I/O, key names and metadata."""
from .value import KilnLora, module_groups
from .io import save_lora, load_lora_file, atomic_write_bytes

__all__ = ["KilnLora", "module_groups", "save_lora", "load_lora_file", "atomic_write_bytes"]

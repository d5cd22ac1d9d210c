"""One algorithm per module; importing this package registers them all."""
from . import lora  # noqa: F401

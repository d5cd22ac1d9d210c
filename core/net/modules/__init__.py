"""One algorithm per module; importing this package registers them all."""
from . import dora, dylora, full, ia3, lokr, loha, lora  # noqa: F401

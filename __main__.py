"""``python -m kiln``: the command line (run workflows headless, the demo, the LoRA tools, the export)."""
import sys

from .cli.main import main

sys.exit(main())

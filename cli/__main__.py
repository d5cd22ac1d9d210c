"""``python -m cli`` (an alias of ``python -m kiln``) from the pack's folder: import the pack as ``kiln``, then run its command line.

Run this way, this folder is a top-level package, so the pack's own modules (which use relative imports)
are reached through ``kiln.cli`` once the pack is loaded under its name.
"""
import sys

from . import load_pack

load_pack()
from kiln.cli.main import main  # noqa: E402

sys.exit(main())

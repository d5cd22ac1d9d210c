"""A cheap fingerprint of dataset folders, so the Load Dataset node re-runs when the files change."""
from __future__ import annotations

import hashlib
from pathlib import Path


def dataset_fingerprint(*folders: str) -> str:
    """A hash of the files (names, sizes, modification times) in the folders and their direct subfolders:
    changes when an image or caption is added, removed or edited (the node re-runs then)."""
    h = hashlib.sha1()
    for text in folders:
        root = Path(text).expanduser() if str(text).strip() else None
        if root is None or not root.is_dir():
            h.update(f"missing:{text}".encode())
            continue
        for d in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
            for f in sorted(d.iterdir()):
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()

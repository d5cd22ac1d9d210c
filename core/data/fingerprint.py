"""A cheap fingerprint of dataset folders, so the Load Dataset node re-runs when the files change."""
from __future__ import annotations

import hashlib
from pathlib import Path


def dataset_fingerprint(*folders: str) -> str:
    """A hash of the files (names, sizes, modification times) in the folders, their subfolders and theirs (an edit
    dataset's ``10_name/control/``): changes when an image, control or caption is added, removed or edited (the
    node re-runs then)."""
    h = hashlib.sha1()
    for text in folders:
        root = Path(text).expanduser() if str(text).strip() else None
        if root is None or not root.is_dir():
            h.update(f"missing:{text}".encode())
            continue
        subdirs = sorted(p for p in root.iterdir() if p.is_dir())
        for d in [root] + subdirs + sorted(q for p in subdirs for q in p.iterdir() if q.is_dir()):
            for f in sorted(d.iterdir()):
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()

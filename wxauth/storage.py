"""Where uploaded files (avatars) are kept: a small interface and a local-folder backend.

`LocalStorage` writes under a folder (default: ``<instance>/media``) and the app serves it at
``/media/<name>``. Names are content hashes, so a URL never changes meaning and re-uploading
the same image stores nothing new. Another backend (object storage, a CDN) implements the
same method.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


class Storage:
    def save(self, name: str, data: bytes) -> None:
        """Store `data` under `name` (a relative path such as ``avatars/ab12….jpg``)."""
        raise NotImplementedError


class LocalStorage(Storage):
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def save(self, name: str, data: bytes) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            return
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # atomic: readers never see half a file

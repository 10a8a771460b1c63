"""Uploaded files (avatars): image checks and re-encoding, and where the files are kept.

Avatars come from ``<button open-type="chooseAvatar">``: the client uploads the temporary
file with ``wx.uploadFile``; `process_avatar` checks it is really an image (by content, not
by name) and re-encodes it with Pillow (which drops EXIF, GPS and any trailing payload).

`LocalStorage` writes under a folder (default: ``<instance>/media``) and the app serves it at
``/media/<name>``. Names are content hashes, so a URL never changes meaning and re-uploading
the same image stores nothing new. Another backend (object storage, a CDN) implements the
same methods.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import warnings
from pathlib import Path
from urllib.parse import urlsplit


class InvalidImage(ValueError):
    """The upload is not a JPEG, PNG or WebP image this service accepts (the message says why)."""


FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"),
           "WEBP": ("webp", "image/webp")}


def process_avatar(data: bytes, max_side: int, max_pixels: int) -> tuple[str, bytes]:
    """Validate and re-encode an uploaded avatar.

    Args:
        data: the uploaded bytes.
        max_side: the longest side of the stored image, in pixels (larger ones shrink).
        max_pixels: images with more pixels than this are refused (decompression bombs).

    Returns:
        (file name ``avatars/<sha256>.<ext>``, re-encoded bytes) in the upload's format.

    Raises:
        InvalidImage for anything that is not a JPEG, PNG or WebP image.
    """
    # Imported on first upload: most workers never need Pillow's memory.
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise InvalidImage("The avatar must be a JPEG, PNG or WebP image.")
            if image.width * image.height > max_pixels:
                raise InvalidImage("The avatar has too many pixels.")
            image.load()
    except InvalidImage:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage("The upload is not a readable JPEG, PNG or WebP image.") from None
    fmt = image.format
    image = ImageOps.exif_transpose(image)  # keep the visible orientation, then drop EXIF
    image.thumbnail((max_side, max_side))
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    options = {"JPEG": {"quality": 88, "optimize": True}, "PNG": {"optimize": True},
               "WEBP": {"quality": 88}}[fmt]
    image.save(out, fmt, **options)  # a fresh file: no EXIF/XMP/ICC text, no trailing bytes
    encoded = out.getvalue()
    extension = FORMATS[fmt][0]
    return f"avatars/{hashlib.sha256(encoded).hexdigest()[:32]}.{extension}", encoded


_AVATAR_NAME = re.compile(r"/(avatars/[0-9a-f]{32}\.(?:jpg|png|webp))\Z")


def avatar_name(url: str | None) -> str | None:
    """The stored name (``avatars/<hash>.<ext>``, as `process_avatar` names files) an avatar
    URL ends with; None for any other URL (WeChat's own avatars, other sites)."""
    if not url:
        return None
    found = _AVATAR_NAME.search(urlsplit(url).path)
    return found.group(1) if found else None


class Storage:
    def save(self, name: str, data: bytes) -> None:
        """Store `data` under `name` (a relative path such as ``avatars/ab12….jpg``)."""
        raise NotImplementedError

    def delete(self, name: str) -> None:
        """Remove the file `name`; nothing happens when it is not there."""
        raise NotImplementedError


class LocalStorage(Storage):
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def save(self, name: str, data: bytes) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            return
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # atomic: readers never see half a file

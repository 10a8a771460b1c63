"""Uploaded files (avatars): image checks and re-encoding, and where the files are kept.

Avatars come from ``<button open-type="chooseAvatar">``: the client uploads the temporary
file with ``wx.uploadFile``; `process_avatar` checks it is really an image (by content, not
by name) and re-encodes it with Pillow into a fresh file: pixels only, in sRGB, no metadata
(EXIF and GPS, XMP, comments, text chunks, ICC profiles) and no trailing payload.

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
    try:
        image = ImageOps.exif_transpose(image)  # keep the visible orientation
    except Exception:  # noqa: BLE001  an unreadable EXIF block (Pillow raises SyntaxError,
        pass  # struct.error, TypeError…): the orientation as stored; the EXIF goes anyway
    image = _in_srgb(image)
    image.thumbnail((max_side, max_side))
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    # Pillow writes some metadata of the source again unless told otherwise (a JPEG's
    # comment, a PNG's ICC profile): only what the pixels need is kept
    image.info = {key: image.info[key] for key in _PIXEL_INFO if key in image.info}
    out = io.BytesIO()
    options = {"JPEG": {"quality": 88, "optimize": True}, "PNG": {"optimize": True},
               "WEBP": {"quality": 88}}[fmt]
    image.save(out, fmt, **options)  # a fresh file: no metadata, no trailing bytes
    encoded = out.getvalue()
    extension = FORMATS[fmt][0]
    return f"avatars/{hashlib.sha256(encoded).hexdigest()[:32]}.{extension}", encoded


_PIXEL_INFO = ("transparency",)  # (a palette image's transparent colour)


def _in_srgb(image):
    """`image` with its embedded ICC profile (Display P3, Adobe RGB, CMYK…) applied: pixels
    in sRGB, which is how a file without a profile is shown. Unchanged when it has no
    profile, a mode ICC transforms do not take, or a profile littleCMS cannot read."""
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    from PIL import ImageCms

    try:
        return ImageCms.profileToProfile(image, io.BytesIO(profile),
                                         ImageCms.createProfile("sRGB"),
                                         outputMode="RGBA" if image.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image


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

"""Avatar uploads from ``<button open-type="chooseAvatar">``: the client uploads the temporary
file with ``wx.uploadFile``; we check it is really an image (by content, not by name),
re-encode it with Pillow (which drops EXIF, GPS and any trailing payload) and store it."""

from __future__ import annotations

import hashlib
import io
import warnings

from .errors import Problem

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
        Problem(invalid_image) for anything that is not a JPEG, PNG or WebP image.
    """
    # Imported on first upload: most workers never need Pillow's memory.
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise Problem("invalid_image", "The avatar must be a JPEG, PNG or WebP image.")
            if image.width * image.height > max_pixels:
                raise Problem("invalid_image", "The avatar has too many pixels.")
            image.load()
    except Problem:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Problem("invalid_image",
                      "The upload is not a readable JPEG, PNG or WebP image.") from None
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

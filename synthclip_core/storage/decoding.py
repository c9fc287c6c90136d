"""Images from bytes that came from elsewhere: one rule for every reader of them.

Decoders fail in more ways than ``OSError``: a PNG whose ICC profile inflates past Pillow's
limit raises ``ValueError``, a bad palette or EXIF block others, and an image over Pillow's pixel
limit is a decompression bomb however small its file (Pillow only warns below twice the limit, then
decodes gigabytes). Readers of training, evaluation and export data ask :func:`open_image`, which
turns every one of those into :class:`Unreadable`, so one bad file is that file's problem, counted
where it is read, never an error that stops the job.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image


class Unreadable(ValueError):
    """A sample that cannot be read: whatever its decoder raised, named."""


def open_image(data: bytes) -> Image.Image:
    """Encoded bytes as a whole RGB image (every pixel decoded), or :class:`Unreadable`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.convert("RGB")
    except Exception as exc:  # noqa: BLE001 (every way one file fails to decode is that file's)
        raise Unreadable(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None


def image_size(data: bytes) -> tuple[tuple[int, int], str]:
    """(size, format) from the header alone, or :class:`Unreadable` (a bomb's header included)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size, image.format
    except Exception as exc:  # noqa: BLE001
        raise Unreadable(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None

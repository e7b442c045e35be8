"""Any image Pillow opens, as the 8-bit RGB the models are trained on.

`Image.convert("RGB")` is right for 8-bit modes (grayscale, palette, CMYK,
RGBA: alpha dropped, the colour channels as stored) but not for 16-bit
grayscale (`I;16*`, or `I` holding 16-bit values, as a 16-bit PNG opens):
Pillow clips those values to 255, so a true 16-bit crop reads as a white
image and trains and searches as one, silently. Here 16-bit values are scaled
to 8 bits by the definition, round(v / 257) (65535 -> 255), and a 32-bit
integer or float image whose values do not fit 16 bits is refused by name
rather than guessed at.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["to_rgb"]

_16_BIT_MAX = 65535


def to_rgb(img: Image.Image, where: str = "image") -> Image.Image:
    """`img` as 8-bit RGB; 16-bit grayscale scaled by 1/257, not clipped."""
    mode = img.mode
    if not (mode.startswith("I") or mode == "F"):
        return img.convert("RGB")  # loads it: the caller may close the file next
    values = np.asarray(img)
    if values.size and (values.min() < 0 or values.max() > _16_BIT_MAX):
        raise ValueError(
            f"{where}: mode {mode} holds values {values.min()}..{values.max()}, outside the "
            "16-bit range 0..65535 that can be scaled to 8 bits; save it as 8- or 16-bit"
        )
    if mode.startswith("I;16") or (values.size and values.max() > 255):
        values = np.rint(values.astype(np.float64) / 257.0)
    gray = values.astype(np.uint8)
    return Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB")

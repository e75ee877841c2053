"""Decoding image files into the tensors torchvision's detectors take.

JPEG files are decoded with ``torchvision.io.decode_jpeg`` (libjpeg-turbo, straight into a tensor); other
formats, and JPEGs it cannot read (CMYK, progressive oddities), go through PIL. Either way a missing,
corrupt or truncated file is a one-line error naming it. ``benchmarks/data.py`` measures both paths.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scaledet.labelspace.io.errors import ScaledetError, one_line

JPEG_MAGIC = b"\xff\xd8\xff"
#: Most pixels an image may have before it is decoded: PIL's own bomb threshold (89 M pixels, a 9459² RGB
#: image is 268 MB), applied to every decoder, since libjpeg-turbo has none and a 631-byte JPEG can claim
#: 50000 × 50000.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


def read_image_uint8(path: Path) -> torch.Tensor:
    """An image file as a 3 × H × W uint8 RGB tensor (4× less to pass between DataLoader workers than
    floats). JPEGs take the libjpeg-turbo path when they are whole; everything else goes through PIL."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ScaledetError(f"{path}: image not found") from None
    except OSError as err:
        raise ScaledetError(f"{path}: cannot be read ({one_line(err, 100)})") from None
    _check_pixels(data, path)
    # a truncated JPEG lacks its end-of-image marker; libjpeg would fill the rest with grey, PIL refuses it
    if data[:3] == JPEG_MAGIC and data.rstrip(b"\x00")[-2:] == b"\xff\xd9":
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError:
            pass  # an unusual JPEG: PIL decides
    return torch.from_numpy(_decode_with_pil(data, path)).permute(2, 0, 1)


def _check_pixels(data: bytes, path: Path) -> None:
    """Refuse an image whose header claims more than ``MAX_IMAGE_PIXELS``, reading the header only."""
    import io
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise ScaledetError(f"{path}: more than {MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?); "
                            "not decoded") from None
    except (OSError, SyntaxError, ValueError):
        return  # not an image PIL knows: decoding says why, in one line
    if width * height > MAX_IMAGE_PIXELS:
        raise ScaledetError(f"{path}: {width} × {height} pixels, more than {MAX_IMAGE_PIXELS:,} (a "
                            "decompression bomb?); not decoded")


def _decode_with_pil(data: bytes, path: Path) -> np.ndarray:
    import io

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode.startswith("I") or image.mode == "F":
                return _wide_grey_to_rgb(np.asarray(image), image.mode)
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        detail = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", one_line(err, 100))  # we decode from memory
        raise ScaledetError(f"{path}: not a readable image ({detail})") from None


def _wide_grey_to_rgb(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit (``I;16``, ``I``) and float (``F``) greyscale to 8-bit RGB by scaling, not clipping: PIL's
    ``convert("RGB")`` clips at 255, which turns a 16-bit PNG (thermal, depth, medical) white."""
    values = values.astype(np.float64)
    if mode == "F":
        top = values.max() if values.size and values.max() > 1.0 else 1.0
        scaled = values / top * 255.0
    else:
        scaled = values / 257.0  # 0 … 65535 → 0 … 255
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def read_image_array(path: Path) -> np.ndarray:
    """An image file as H × W × 3 uint8 RGB (for drawing)."""
    return read_image_uint8(path).permute(1, 2, 0).numpy()


def to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [0, 1], the input torchvision's detectors take (done after the transfer)."""
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image


def read_image(path: Path) -> torch.Tensor:
    """An image file as a 3 × H × W float tensor in [0, 1]."""
    return to_float(read_image_uint8(path))

"""Frame images on the wire: uint8 RGB [H, W, 3] <-> JPEG / PNG / raw bytes (Pillow + numpy, no torch)."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from simulator.serve.protocol import FORMATS, MAX_START_IMAGE_PIXELS, ProtocolError


def encode_frame(frame: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """uint8 [H, W, 3] -> bytes in `fmt` ("jpeg", "png" or "raw")."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
    if fmt == "raw":
        return np.ascontiguousarray(frame).tobytes()
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    out = io.BytesIO()
    if fmt == "jpeg":
        # 4:4:4 keeps colour edges at 64x64, where 4:2:0 would smear whole blocks
        Image.fromarray(frame).save(out, format="JPEG", quality=quality, subsampling=0)
    else:
        Image.fromarray(frame).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def decode_frame(data: bytes, fmt: str, width: int, height: int) -> np.ndarray:
    """bytes in `fmt` -> uint8 [height, width, 3]; raises ValueError when the size disagrees."""
    if fmt == "raw":
        if len(data) != height * width * 3:
            raise ValueError(f"raw frame has {len(data)} bytes, expected {height}*{width}*3 = {height * width * 3}")
        return np.frombuffer(data, np.uint8).reshape(height, width, 3)  # bytes -> [H, W, 3]
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if image.shape != (height, width, 3):
        raise ValueError(f"{fmt} frame decodes to {image.shape}, expected ({height}, {width}, 3)")
    return image


def decode_start_image(data: bytes) -> np.ndarray:
    """An untrusted PNG/JPEG from a client -> uint8 [H, W, 3]. Refuses other formats and images
    over MAX_START_IMAGE_PIXELS before decoding them (the header says the size)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
            if image.width * image.height > MAX_START_IMAGE_PIXELS:
                raise ProtocolError("bad_start", f"start image is {image.width}x{image.height}, over the "
                                                 f"{MAX_START_IMAGE_PIXELS}-pixel limit")
            return np.asarray(image.convert("RGB"))
    except ProtocolError:
        raise
    except Exception as err:  # Pillow raises many types on bad input
        raise ProtocolError("bad_start", f"start image is not a readable PNG or JPEG ({type(err).__name__}: "
                                         f"{err})") from None


def fit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Center-crop to the target aspect ratio, then resize: uint8 [h, w, 3] -> [height, width, 3]."""
    h, w = image.shape[:2]
    scale = min(h / height, w / width)
    ch, cw = round(height * scale), round(width * scale)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(np.ascontiguousarray(image[top:top + ch, left:left + cw]))
    return np.array(crop.resize((width, height), Image.Resampling.BICUBIC))  # a writable copy

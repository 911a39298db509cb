"""Photos are decoded within a memory bound: one guard for the upload and the thumbnail task.

A photo's file says little about what decoding it costs: a few hundred bytes can declare
tens of megapixels, and a 200 KB PNG of one colour can be 7000x7000 RGBA. So before any
pixel is decoded, the header's declared size is priced in bytes of memory (what the
decoders and fieldsync's own steps hold at their peak, measured per format by
tests/sync/test_image_memory.py) and refused (413 image_too_large) above
SYNC_MAX_IMAGE_MEMORY_BYTES, or above SYNC_MAX_IMAGE_PIXELS whatever the format.
"""
from __future__ import annotations

import io
import math
import struct
import zlib
from typing import IO

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from fieldsync.errors import ApiError

# The only Pillow plugins ever tried on a photo.
DECODERS = ["JPEG", "PNG", "WEBP"]
# How each accepted format begins; bytes that begin so but do not decode are a broken photo
# (400 invalid_image), anything else is not a photo at all (415).
SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
# What a broken or hostile file can make Pillow's decoders raise; all of it is the
# client's fault (400), never a server error.
DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
    struct.error, zlib.error, Image.DecompressionBombError,
)

# libwebp decodes into canvases of its own (16 bytes a pixel at the peak, Pillow's copy
# included), and its lossy encoder, which every cleaned WebP goes through, holds up to 20
# bytes a pixel beside the picture, for a photo of noise (measured; less for smooth ones).
WEBP_BYTES_PER_PIXEL = 28


def is_image_signature(data: bytes) -> bool:
    return data.startswith(SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def pixel_bytes(mode: str) -> int:
    """Bytes a pixel takes in a Pillow image of this mode (RGB is padded to four)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def _jpeg_coefficient_bytes(image: Image.Image) -> int:
    """A progressive (or multi-scan) JPEG is decoded through a buffer of every DCT
    coefficient of the picture: two bytes per sample of each component, in whole blocks.
    Whether a baseline file has several scans is not known from its header, so every JPEG
    is priced with the buffer."""
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
    h_max = max(h for _, h, _, _ in layers) or 1
    v_max = max(v for _, _, v, _ in layers) or 1
    width, height = image.size
    mcus_across, mcus_down = math.ceil(width / (8 * h_max)), math.ceil(height / (8 * v_max))
    return sum(mcus_across * h * mcus_down * v * 64 * 2 for _, h, v, _ in layers)


def decode_cost(image: Image.Image) -> int:
    """The bytes of memory decoding `image` (header read, no pixel decoded yet) and cleaning
    it may hold at once, on the dearest path: the decoder's own peak, or two full pictures
    (a picture turned upright as EXIF says, then copied afresh without its metadata)."""
    width, height = image.size
    pixels = width * height
    two_pictures = 2 * pixels * pixel_bytes(image.mode)
    if image.format == "WEBP":
        return max(pixels * WEBP_BYTES_PER_PIXEL, two_pictures)
    if image.format in ("JPEG", "MPO"):
        return max(pixels * pixel_bytes(image.mode) + _jpeg_coefficient_bytes(image), two_pictures)
    return two_pictures


def too_large(image: Image.Image) -> ApiError | None:
    """The refusal for a photo whose declared size is over the limits, or None."""
    width, height = image.size
    if width * height > settings.SYNC_MAX_IMAGE_PIXELS:
        return ApiError("image_too_large", f"The image declares {width}x{height} pixels; at most "
                        f"{settings.SYNC_MAX_IMAGE_PIXELS} pixels are accepted.", status_code=413)
    cost = decode_cost(image)
    if cost > settings.SYNC_MAX_IMAGE_MEMORY_BYTES:
        return ApiError(
            "image_too_large",
            f"The image declares {width}x{height} pixels ({image.mode}); decoding it would take "
            f"{cost // 2**20} MiB, at most {settings.SYNC_MAX_IMAGE_MEMORY_BYTES // 2**20} MiB are allowed.",
            status_code=413,
        )
    return None


def webp_declared_size(head: bytes) -> tuple[int, int] | None:
    """The canvas a WebP file declares, read from its first 30 bytes (simple lossy, lossless
    or extended layout), or None if it is not laid out as one."""
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    kind = head[12:16]
    if kind == b"VP8 ":
        return (int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF)
    if kind == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    return None


def _webp_too_large(fp: IO[bytes]) -> ApiError | None:
    """Pillow's WebP plugin has libwebp allocate its canvases while merely opening a file
    (untouched, so not yet resident, but address space all the same): a WebP is priced
    from its own header before Pillow sees it."""
    position = fp.tell()
    size = webp_declared_size(fp.read(30))
    fp.seek(position)
    if size is None:
        return None
    width, height = size
    pixels = width * height
    if pixels > settings.SYNC_MAX_IMAGE_PIXELS or pixels * WEBP_BYTES_PER_PIXEL > settings.SYNC_MAX_IMAGE_MEMORY_BYTES:
        return ApiError("image_too_large", f"The image declares {width}x{height} pixels; decoding it would take "
                        f"{pixels * WEBP_BYTES_PER_PIXEL // 2**20} MiB, at most "
                        f"{settings.SYNC_MAX_IMAGE_MEMORY_BYTES // 2**20} MiB are allowed.", status_code=413)
    return None


def image_open(source: bytes | IO[bytes], formats: list[str] | None = None) -> Image.Image:
    """Open a photo's header (no pixel decoded) and refuse it if decoding it would take
    more memory than allowed. Raises ApiError: 413 image_too_large; 400 invalid_image for
    bytes that begin as a JPEG, PNG or WebP but cannot be read; 415 for anything else."""
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    refusal = _webp_too_large(fp)
    if refusal is not None:
        raise refusal
    try:
        image = Image.open(fp, formats=formats or DECODERS)
    except Image.DecompressionBombError:
        # Pillow's own guard (far above ours) fired while reading the header.
        raise ApiError("image_too_large", "The image declares an enormous size.", status_code=413) from None
    except (UnidentifiedImageError, *DECODE_ERRORS):
        fp.seek(0)
        if is_image_signature(fp.read(12)):
            raise ApiError("invalid_image", "The image header is corrupt or truncated.", status_code=400) from None
        raise ApiError("unsupported_media_type", "The file is not a JPEG, PNG or WebP image.",
                       status_code=415) from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ApiError("invalid_image", f"The image declares {width}x{height} pixels.", status_code=400)
    refusal = too_large(image)
    if refusal is not None:
        raise refusal
    return image


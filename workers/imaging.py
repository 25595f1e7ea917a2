"""Decode an upload into a BGR array, resize it, and encode a result with no metadata.

The worker runs these on bytes that :func:`backend.imaging.sniff` has already
accepted, so the format and the header's dimensions are known and bounded
before any pixel buffer is allocated. Decoding still checks everything again,
because the header was read by different code than the decoder that now runs.

Decisions a caller should know:

* **One decode, no guessing.** Every format is decoded once with
  ``IMREAD_UNCHANGED`` and normalised here: 16-bit samples keep their high byte
  (what OpenCV's own 8-bit conversion does), greyscale is replicated to BGR, and
  an alpha channel is **composited onto white**. Dropping alpha would expose
  whatever colour the transparent pixels happen to hold, which an editor may
  have left from content the user meant to hide; compositing shows what the user
  saw on a light page.
* **Orientation.** ``IMREAD_UNCHANGED`` does not apply EXIF orientation, so the
  orientation tag is read from the EXIF block that OpenCV itself extracted
  (``imdecodeWithMetadata``) and applied with the same transforms OpenCV uses.
  The output is upright; the tests check it against OpenCV's ``IMREAD_COLOR``.
* **Truncated or corrupt bodies.** OpenCV 5 returns no image at all for a
  truncated JPEG, PNG or WebP body (libjpeg-turbo's "premature end of data"
  and libpng's "input buffer is incomplete" are fatal there), and raises
  ``cv2.error`` when a size limit trips. Both become :class:`UndecodableImage`,
  so a truncated upload always fails the same way. Corruption *inside* a
  complete file's compressed data is different: libjpeg-turbo and libwebp may
  decode it to a damaged-looking image of the right size, which is returned
  (the pixels are garbage, not a security problem). :func:`decode` never
  returns an image whose size differs from the header's.
* **PNG chunk lengths** are checked against the data before OpenCV runs, since
  OpenCV 5 allocates a chunk's declared length up front (see
  :func:`_check_png_chunks`).
* **OpenCV's own pixel limit.** OpenCV reads ``OPENCV_IO_MAX_IMAGE_PIXELS``
  (and ``..._WIDTH``/``..._HEIGHT``) once, when the library loads, so setting
  it later has no effect. This module sets conservative defaults *before*
  importing cv2 if no one has imported it yet and the deployment has not set
  them; :data:`CV2_LIMITS_APPLIED` records whether that happened. Deployments
  should also set the variables in the worker's environment so the limit does
  not depend on import order. It is a second line behind ``sniff``'s
  ``max_pixels``, not a replacement: it must be at least as large.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Final, Literal

from backend.imaging import ImageHeader, UndecodableImage

#: OpenCV's decoder-side ceiling. 10000 x 10000 matches ``sniff``'s default
#: ``max_side``; a deployment that accepts more must raise these in the
#: environment, or large, valid uploads fail as undecodable.
CV2_MAX_IMAGE_PIXELS: Final = 10000 * 10000
CV2_MAX_IMAGE_SIDE: Final = 10000

_CV2_LIMIT_ENV: Final = {
    "OPENCV_IO_MAX_IMAGE_PIXELS": str(CV2_MAX_IMAGE_PIXELS),
    "OPENCV_IO_MAX_IMAGE_WIDTH": str(CV2_MAX_IMAGE_SIDE),
    "OPENCV_IO_MAX_IMAGE_HEIGHT": str(CV2_MAX_IMAGE_SIDE),
}


def _apply_cv2_limits() -> bool:
    """Set OpenCV's decode limits unless cv2 is already loaded; say if they are in force."""
    if "cv2" in sys.modules:
        return all(name in os.environ for name in _CV2_LIMIT_ENV)
    for name, value in _CV2_LIMIT_ENV.items():
        os.environ.setdefault(name, value)
    return True


#: True when OpenCV's limits were in the environment before cv2 loaded.
CV2_LIMITS_APPLIED: Final = _apply_cv2_limits()

import cv2  # noqa: E402  (must follow the environment set-up above)
import numpy as np  # noqa: E402

__all__ = ["CV2_LIMITS_APPLIED", "decode", "encode", "exif_orientation", "fit_within"]

_CONTENT_TYPES: Final = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_EXTENSIONS: Final = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
_ENCODE_PARAMS: Final = {
    "jpeg": [cv2.IMWRITE_JPEG_QUALITY, 92],
    "png": [cv2.IMWRITE_PNG_COMPRESSION, 6],
    "webp": [cv2.IMWRITE_WEBP_QUALITY, 90],
}

_PNG_MAX_CHUNK: Final = 2**31 - 1  # PNG spec, 5.3

_UNDECODABLE = (
    "The image could not be decoded: its data is damaged or truncated. "
    "Re-export it from the original and upload it again."
)


def decode(data: bytes, header: ImageHeader) -> np.ndarray:
    """Decode ``data`` into an upright BGR ``uint8`` array of shape (H, W, 3).

    ``header`` is what ``sniff`` returned for the same bytes. Raises
    :class:`UndecodableImage` when OpenCV cannot decode the bytes, when they do
    not start with the header's magic number (so OpenCV cannot pick a decoder
    for another format), or when the decoded size differs from the header's.
    """
    if not _has_magic(data, header.format):
        raise UndecodableImage(_UNDECODABLE)
    if header.format == "png":
        _check_png_chunks(data)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image, kinds, blobs = cv2.imdecodeWithMetadata(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        # OpenCV's message names its source files; the client gets ours.
        raise UndecodableImage(_UNDECODABLE) from None
    if image is None or image.size == 0:
        raise UndecodableImage(_UNDECODABLE)
    if image.shape[:2] != (header.height, header.width):
        raise UndecodableImage(
            "The image's header and its data disagree about its size. "
            "Re-export it from the original and upload it again."
        )
    image = _to_bgr8(image)
    exif = b""
    for kind, blob in zip(np.ravel(kinds).tolist(), blobs, strict=False):
        if kind == cv2.IMAGE_METADATA_EXIF:
            exif = np.asarray(blob, dtype=np.uint8).tobytes()
            break
    return _orient(image, exif_orientation(exif))


def _has_magic(data: bytes, fmt: str) -> bool:
    """The bytes are still what sniff said, so OpenCV's own sniffing picks that decoder."""
    if fmt == "jpeg":
        return data.startswith(b"\xff\xd8\xff")
    if fmt == "png":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _check_png_chunks(data: bytes) -> None:
    """Refuse a PNG whose chunks do not fit in the data, before OpenCV sees it.

    OpenCV 5 reads PNG chunks itself (for APNG) and allocates each chunk's
    declared length before reading it: fuzzing found that a 44-byte PNG whose
    IDAT claims 0xFFFF1EB6 bytes makes ``imdecode`` allocate 4 GB and spend
    seconds failing. Walking the chunk headers first is cheap (8 bytes read per
    chunk, one step per chunk) and leaves OpenCV only chunks that are really
    there. Bytes after IEND are ignored, as every decoder ignores them.
    """
    end, i = len(data), 8
    while i + 12 <= end:
        (length,) = struct.unpack_from(">I", data, i)
        if length > _PNG_MAX_CHUNK or i + 12 + length > end:
            break
        kind = data[i + 4 : i + 8]
        i += 12 + length
        if kind == b"IEND":
            return
    raise UndecodableImage(_UNDECODABLE)


def _to_bgr8(image: np.ndarray) -> np.ndarray:
    """Normalise any decoder output (1, 3 or 4 channels; 8 or 16 bit) to BGR uint8."""
    if image.dtype == np.uint16:
        # The high byte, as OpenCV's IMREAD_COLOR and libpng's strip_16 produce.
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise UndecodableImage(_UNDECODABLE)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels == 3:
        return image
    if channels == 4:
        return _composite_on_white(image)
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    raise UndecodableImage(_UNDECODABLE)


def _composite_on_white(bgra: np.ndarray) -> np.ndarray:
    """Blend BGRA over an opaque white background, rounding to nearest."""
    bgr = bgra[:, :, :3].astype(np.uint16)
    alpha = bgra[:, :, 3:4].astype(np.uint16)
    blended = (bgr * alpha + 255 * (255 - alpha) + 127) // 255
    return blended.astype(np.uint8)


def exif_orientation(exif: bytes) -> int:
    """Return the EXIF orientation (1-8) in a TIFF-structured EXIF block, 1 if absent or bad.

    Reads IFD0 only, as OpenCV does. Bounded: at most as many entries as fit in
    the block. Malformed EXIF is ignored rather than rejected, because the
    pixels are fine and an upright guess is better than a failed job.
    """
    if exif.startswith(b"Exif\x00\x00"):
        exif = exif[6:]
    if exif[:4] == b"II*\x00":
        order = "<"
    elif exif[:4] == b"MM\x00*":
        order = ">"
    else:
        return 1
    if len(exif) < 8:
        return 1
    (ifd,) = struct.unpack_from(order + "I", exif, 4)
    if ifd + 2 > len(exif):
        return 1
    (count,) = struct.unpack_from(order + "H", exif, ifd)
    count = min(count, (len(exif) - ifd - 2) // 12)
    for index in range(count):
        tag, kind, _n = struct.unpack_from(order + "HHI", exif, ifd + 2 + 12 * index)
        if tag == 0x0112:
            if kind != 3:  # SHORT
                return 1
            (value,) = struct.unpack_from(order + "H", exif, ifd + 2 + 12 * index + 8)
            return value if 1 <= value <= 8 else 1
    return 1


# EXIF orientation -> (transpose first?, cv2.flip code or None), as OpenCV's
# ApplyExifOrientation does it: 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
# 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
_ORIENTATIONS: Final[dict[int, tuple[bool, int | None]]] = {
    1: (False, None),
    2: (False, 1),
    3: (False, -1),
    4: (False, 0),
    5: (True, None),
    6: (True, 1),
    7: (True, -1),
    8: (True, 0),
}


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation so the image is upright."""
    transpose, flip = _ORIENTATIONS.get(orientation, (False, None))
    if transpose:
        image = cv2.transpose(image)
    if flip is not None:
        image = cv2.flip(image, flip)
    return image


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale ``image`` with INTER_AREA so its longest side is at most ``max_side``.

    Returns ``image`` itself when it already fits: models see the original
    pixels whenever possible. Never upscales. The aspect ratio is kept, and no
    side drops below one pixel.
    """
    if max_side < 1:
        raise ValueError("max_side must be at least 1")
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image
    new_width = max(1, round(width * max_side / longest))
    new_height = max(1, round(height * max_side / longest))
    return cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)


def encode(image: np.ndarray, fmt: Literal["jpeg", "png", "webp"]) -> tuple[bytes, str]:
    """Encode a BGR ``uint8`` image as ``fmt``; return the bytes and their content type.

    Only pixels are written: OpenCV's ``imencode`` adds no EXIF, XMP, ICC or
    comment unless it is handed metadata, and it is handed none, so nothing
    from the upload other than its (processed) pixels can reach the result.
    JPEG gets the minimal JFIF APP0 that libjpeg always writes.
    """
    if fmt not in _EXTENSIONS:
        raise ValueError(f"cannot encode {fmt!r}: expected jpeg, png or webp")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
    try:
        ok, buffer = cv2.imencode(_EXTENSIONS[fmt], image, _ENCODE_PARAMS[fmt])
    except cv2.error as exc:  # e.g. WebP's 16383-pixel side limit
        raise ValueError(f"OpenCV cannot encode this {fmt} image") from exc
    if not ok:
        raise ValueError(f"OpenCV cannot encode this {fmt} image")
    return buffer.tobytes(), _CONTENT_TYPES[fmt]

"""Identify an uploaded image and read its dimensions from the header alone.

The web calls :func:`sniff` on every upload before the bytes are encrypted and
queued. It decides the type from the bytes (magic numbers), never from a file
name or the client's ``Content-Type``, and reads width and height by walking the
container's header structures, never by decoding pixels. That lets the web turn
away a decompression bomb (a few kilobytes that claim 100000 x 100000 pixels)
before any decoder allocates a frame buffer for it, and keeps the web free of
cv2, numpy and torch.

Everything here is bounded: each loop consumes at least one byte of input per
step, and nothing is allocated in proportion to a size the file claims. The
parsers are deliberately strict about the header and deliberately silent about
the body: a file whose header is sound but whose body is truncated passes
:func:`sniff` and is rejected later by the worker's decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import ClassVar, Literal, cast

from backend.errors import CodedError

__all__ = [
    "ImageHeader",
    "ImageRejected",
    "ImageTooLarge",
    "UndecodableImage",
    "UnsupportedMediaType",
    "sniff",
]

ImageFormat = Literal["jpeg", "png", "webp"]

_ACCEPTED = "JPEG, PNG or WebP"


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an accepted upload says about it, read without decoding."""

    format: ImageFormat
    content_type: str
    width: int
    height: int

    @classmethod
    def of(cls, fmt: str, *, width: int, height: int) -> ImageHeader:
        """A header as a job record keeps it (format and size), for the worker's decode."""
        if fmt not in ("jpeg", "png", "webp"):
            raise UnsupportedMediaType
        return cls(cast(ImageFormat, fmt), f"image/{fmt}", width, height)


class ImageRejected(CodedError):
    """An upload the service will not process; maps one-to-one onto an API error.

    Each subclass fixes its ``code`` and HTTP ``status``; ``message`` tells the
    client what was wrong and what to do, and never quotes the upload's bytes.
    """

    code = "invalid_image"
    status = 422
    default_message: ClassVar[str] = "The image was rejected."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(type(self).code, message or self.default_message)


class UnsupportedMediaType(ImageRejected):
    """The bytes are not a JPEG, PNG or WebP, whatever the name or content type says."""

    code = "unsupported_media_type"
    status = 415
    default_message = (
        f"The file is not a {_ACCEPTED} image (the type is read from the file's "
        f"content, not its name). Convert it to {_ACCEPTED} and upload it again."
    )


class UndecodableImage(ImageRejected):
    """The bytes start like an accepted format but its header or body is broken."""

    code = "undecodable_image"
    status = 422
    default_message = (
        "The image is damaged or truncated and cannot be decoded. "
        "Re-export it from the original and upload it again."
    )


class ImageTooLarge(ImageRejected):
    """The header declares more pixels, or a longer side, than the service accepts."""

    code = "image_too_large"
    status = 422
    default_message = "The image has too many pixels. Downscale it and upload it again."


def sniff(data: bytes, *, max_pixels: int, max_side: int = 10000) -> ImageHeader:
    """Return the format and dimensions of ``data``, or raise an :class:`ImageRejected`.

    Raises :class:`UnsupportedMediaType` (415) unless the magic number is JPEG,
    PNG or WebP; :class:`UndecodableImage` (422) when the header is truncated,
    malformed or declares a zero dimension; :class:`ImageTooLarge` (422) when
    ``width * height > max_pixels`` or either side exceeds ``max_side``.
    """
    if max_pixels <= 0 or max_side <= 0:
        raise ValueError("max_pixels and max_side must be positive")
    data = bytes(data)  # memoryview/bytearray in, immutable bytes for slicing
    if data.startswith(b"\xff\xd8\xff"):
        header = _jpeg_header(data)
    elif data.startswith(_PNG_SIGNATURE):
        header = _png_header(data)
    elif len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        header = _webp_header(data)
    else:
        raise UnsupportedMediaType()
    if header.width <= 0 or header.height <= 0:
        raise UndecodableImage("The image header declares a zero width or height.")
    if header.width > max_side or header.height > max_side:
        raise ImageTooLarge(
            f"The image is {header.width}x{header.height} pixels; each side may be at "
            f"most {max_side}. Downscale it and upload it again."
        )
    if header.width * header.height > max_pixels:
        raise ImageTooLarge(
            f"The image is {header.width}x{header.height} pixels; at most {max_pixels} "
            "pixels are accepted. Downscale it and upload it again."
        )
    return header


# --- JPEG -------------------------------------------------------------------

# Start-of-frame markers that carry the frame size. C4 (DHT), C8 (JPG, reserved)
# and CC (DAC) share the range but are not frame headers.
_JPEG_SOF = frozenset(
    (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
)
# Markers without a length field: RST0-7 and TEM.
_JPEG_STANDALONE = frozenset((*range(0xD0, 0xD8), 0x01))
_JPEG_SOI, _JPEG_EOI, _JPEG_SOS = 0xD8, 0xD9, 0xDA


def _jpeg_header(data: bytes) -> ImageHeader:
    """Walk the marker segments after SOI up to the first SOFn and read its size.

    A frame header must precede the first scan (ITU T.81 B.2), so meeting SOS or
    EOI first means the file is broken; so does any byte other than a marker
    where a marker must be. Every iteration consumes at least two bytes.
    """
    n = len(data)
    i = 2  # after SOI
    while True:
        if i >= n:
            raise _truncated("JPEG")
        if data[i] != 0xFF:
            raise UndecodableImage("The JPEG header is malformed (expected a marker).")
        while i < n and data[i] == 0xFF:  # fill bytes may precede any marker
            i += 1
        if i >= n:
            raise _truncated("JPEG")
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, _JPEG_SOI, _JPEG_EOI, _JPEG_SOS):
            raise UndecodableImage("The JPEG has no frame header before its image data.")
        if i + 2 > n:
            raise _truncated("JPEG")
        (length,) = struct.unpack_from(">H", data, i)
        if length < 2:
            raise UndecodableImage("The JPEG header is malformed (bad segment length).")
        if marker in _JPEG_SOF:
            if i + length > n:
                raise _truncated("JPEG")
            return _jpeg_sof(data[i : i + length])
        i += length


def _jpeg_sof(segment: bytes) -> ImageHeader:
    """Parse a SOFn segment (length field included) into a header."""
    if len(segment) < 8:
        raise UndecodableImage("The JPEG frame header is too short.")
    _length, precision, height, width, components = struct.unpack_from(">HBHHB", segment)
    # T.81 allows 2..16 bits of precision; libjpeg-turbo decodes 8, 12 and 16
    # (lossless). Four components is the practical maximum (CMYK/YCCK).
    if precision not in (8, 12, 16) or not 1 <= components <= 4:
        raise UndecodableImage("The JPEG frame header is malformed.")
    if len(segment) != 8 + 3 * components:
        raise UndecodableImage("The JPEG frame header has the wrong length.")
    return ImageHeader("jpeg", "image/jpeg", width, height)


# --- PNG --------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Allowed bit depths per colour type (PNG spec, table 11.1).
_PNG_DEPTHS: dict[int, frozenset[int]] = {
    0: frozenset((1, 2, 4, 8, 16)),  # greyscale
    2: frozenset((8, 16)),  # truecolour
    3: frozenset((1, 2, 4, 8)),  # indexed
    4: frozenset((8, 16)),  # greyscale + alpha
    6: frozenset((8, 16)),  # truecolour + alpha
}
_PNG_MAX_DIMENSION = 2**31 - 1


def _png_header(data: bytes) -> ImageHeader:
    """Read IHDR, which the PNG spec requires to be the first chunk, and check its CRC."""
    ihdr = data[8 : 8 + 25]  # length(4) type(4) data(13) crc(4)
    if len(ihdr) < 25:
        raise _truncated("PNG")
    length, chunk_type = struct.unpack_from(">I4s", ihdr)
    if chunk_type != b"IHDR" or length != 13:
        raise UndecodableImage("The PNG does not start with a valid IHDR chunk.")
    (crc,) = struct.unpack_from(">I", ihdr, 21)
    if zlib.crc32(ihdr[4:21]) != crc:
        raise UndecodableImage("The PNG header is corrupt (IHDR checksum mismatch).")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(
        ">IIBBBBB", ihdr, 8
    )
    if width > _PNG_MAX_DIMENSION or height > _PNG_MAX_DIMENSION:
        raise UndecodableImage("The PNG header declares an impossible size.")
    if depth not in _PNG_DEPTHS.get(colour, ()) or compression != 0 or filtering != 0:
        raise UndecodableImage("The PNG header declares an invalid pixel format.")
    if interlace not in (0, 1):
        raise UndecodableImage("The PNG header declares an invalid interlace method.")
    return ImageHeader("png", "image/png", width, height)


# --- WebP -------------------------------------------------------------------

_RIFF_MAX_PAYLOAD = 0xFFFFFFFF - 8 - 1  # libwebp's MAX_CHUNK_PAYLOAD
_VP8X_ANIMATION = 0x02


def _webp_header(data: bytes) -> ImageHeader:
    """Read the first chunk of a RIFF/WEBP file: VP8 (lossy), VP8L (lossless) or VP8X.

    The RIFF size may exceed the data we hold (a truncated body is the
    decoder's business), but it must be large enough for one chunk header and
    must contain the first chunk.
    """
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if riff_size < 4 + 8 or riff_size > _RIFF_MAX_PAYLOAD:
        raise UndecodableImage("The WebP container declares an invalid size.")
    if len(data) < 20:
        raise _truncated("WebP")
    fourcc, chunk_size = struct.unpack_from("<4sI", data, 12)
    if chunk_size > riff_size - 4 - 8:
        raise UndecodableImage("The WebP chunk is larger than its container.")
    payload = data[20 : 20 + min(chunk_size, 32)]  # every header we read fits in 30 bytes
    if fourcc == b"VP8 ":
        return _vp8(payload, chunk_size)
    if fourcc == b"VP8L":
        return _vp8l(payload)
    if fourcc == b"VP8X":
        return _vp8x(payload, chunk_size)
    raise UndecodableImage("The WebP file does not start with an image chunk.")


def _vp8(payload: bytes, chunk_size: int) -> ImageHeader:
    """Parse a VP8 key frame header (RFC 6386, 9.1): frame tag, start code, 14-bit sizes."""
    if len(payload) < 10:
        raise _truncated("WebP")
    tag = payload[0] | payload[1] << 8 | payload[2] << 16
    key_frame = not tag & 1
    version = (tag >> 1) & 7
    shown = (tag >> 4) & 1
    partition_size = tag >> 5
    if not key_frame or version > 3 or not shown or partition_size >= chunk_size:
        raise UndecodableImage("The WebP (VP8) frame header is malformed.")
    if payload[3:6] != b"\x9d\x01\x2a":
        raise UndecodableImage("The WebP (VP8) frame has no start code.")
    width, height = struct.unpack_from("<HH", payload, 6)
    # The top two bits of each are an upscaling hint, not part of the size.
    return ImageHeader("webp", "image/webp", width & 0x3FFF, height & 0x3FFF)


def _vp8l(payload: bytes) -> ImageHeader:
    """Parse a VP8L header: signature 0x2F, then 14-bit width-1, height-1, alpha, version."""
    if len(payload) < 5:
        raise _truncated("WebP")
    if payload[0] != 0x2F:
        raise UndecodableImage("The WebP (VP8L) header has no signature.")
    (bits,) = struct.unpack_from("<I", payload, 1)
    if bits >> 29 != 0:  # version must be 0
        raise UndecodableImage("The WebP (VP8L) header declares an unknown version.")
    width = (bits & 0x3FFF) + 1
    height = ((bits >> 14) & 0x3FFF) + 1
    return ImageHeader("webp", "image/webp", width, height)


def _vp8x(payload: bytes, chunk_size: int) -> ImageHeader:
    """Parse the extended header: flags, then 24-bit canvas width-1 and height-1.

    The canvas size is what a decoder allocates, so it is the size we bound.
    A still image's bitstream must match it, which the decoder checks and the
    worker verifies again after decoding.
    """
    if chunk_size != 10:
        raise UndecodableImage("The WebP (VP8X) header has the wrong length.")
    if len(payload) < 10:
        raise _truncated("WebP")
    flags = payload[0]
    if flags & _VP8X_ANIMATION:
        raise UnsupportedMediaType(
            "Animated WebP is not supported. Upload a still JPEG, PNG or WebP image."
        )
    width = (payload[4] | payload[5] << 8 | payload[6] << 16) + 1
    height = (payload[7] | payload[8] << 8 | payload[9] << 16) + 1
    return ImageHeader("webp", "image/webp", width, height)


def _truncated(kind: str) -> UndecodableImage:
    return UndecodableImage(
        f"The {kind} header is truncated. Check that the upload completed and try again."
    )

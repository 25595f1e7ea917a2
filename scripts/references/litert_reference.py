"""Reference outputs of the MediaPipe TFLite files from the original runtime (LiteRT).

Run by hand, in a throwaway environment, never by the product or the tests:

    python3.11 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install ai-edge-litert numpy scikit-image
    /tmp/refenv/bin/python scripts/references/litert_reference.py /path/to/model_dir

It writes ``tests/workers/models/data/selfie_reference.npz``: a 256x256 RGB input
(scikit-image's astronaut, area-resized by numpy block averaging so no OpenCV
is needed here) and what ``ai_edge_litert`` answers for it. The test runs our
OpenCV port on the stored input and compares. ``ai-edge-litert`` is not a
product dependency: the worker runs the file with OpenCV.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from skimage import data

OUT = Path(__file__).resolve().parents[2] / "tests" / "workers" / "models" / "data"


def astronaut_256() -> np.ndarray:
    """The 512x512 astronaut, averaged over 2x2 blocks to 256x256 RGB uint8."""
    image = data.astronaut().astype(np.float32)
    blocks = image.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))
    return np.round(blocks).astype(np.uint8)


def main(model_dir: Path) -> None:
    interpreter = Interpreter(model_path=str(model_dir / "selfie_segmentation.tflite"))
    interpreter.allocate_tensors()
    image = astronaut_256()
    tensor = (image.astype(np.float32) / 255.0)[None]
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    interpreter.invoke()
    prob = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0, :, :, 0]
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "selfie_reference.npz", input_rgb=image, probability=prob)
    print(f"selfie: mean probability {prob.mean():.4f}, written to {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

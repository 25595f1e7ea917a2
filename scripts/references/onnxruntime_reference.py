"""Reference outputs of ``multistyle26.onnx`` from onnxruntime, the runtime it was made for.

Run by hand, in a throwaway environment (onnxruntime is not a product
dependency: the worker runs the file with OpenCV DNN):

    python3.11 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install onnxruntime numpy scikit-image
    /tmp/refenv/bin/python scripts/references/onnxruntime_reference.py /path/to/model_dir

It writes ``tests/workers/models/data/style_reference.npz``: a 64x96 RGB crop
of scikit-image's astronaut (2x2 block averages around her face), two weight
vectors (style 16 alone, and styles 3 and 12 half and half) and what
onnxruntime answers for each.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from skimage import data

OUT = Path(__file__).resolve().parents[2] / "tests" / "workers" / "models" / "data"


def main(model_dir: Path) -> None:
    image = data.astronaut().astype(np.float32)
    small = np.round(image.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))).astype(np.uint8)
    crop = np.ascontiguousarray(small[10:74, 70:166])
    weights = np.zeros((2, 26), np.float32)
    weights[0, 16] = 1.0
    weights[1, 3] = weights[1, 12] = 0.5
    session = ort.InferenceSession(
        str(model_dir / "multistyle26.onnx"), providers=["CPUExecutionProvider"]
    )
    x = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    outputs = np.stack([session.run(None, {"image": x, "style_weights": w})[0][0] for w in weights])
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT / "style_reference.npz", input_rgb=crop, weights=weights, stylized=outputs
    )
    print(f"style: {outputs.shape} written to {OUT} (onnxruntime {ort.__version__})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

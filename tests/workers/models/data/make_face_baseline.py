"""Write ``face_baseline.json``: each detector's boxes on fixed photos, as the code finds them.

The file pins what MTCNN and CenterFace found, each alone, with anonymize's
default params, at the commit named in it, before the speed work of issue 14
changed how they run. ``test_face_baseline.py`` checks that the union that
anonymize hides still covers every one of those faces. Regenerate only on
purpose (a detector change that is meant to find different faces):

    PYTHONPATH=$PWD EPHEMERA_MODEL_DIR=var/models OMP_NUM_THREADS=1 \
        python tests/workers/models/data/make_face_baseline.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
sys.path.insert(0, str(REPO))

from tests.workers.models.face_baseline import PHOTOS, photo  # noqa: E402


def main() -> None:
    import cv2
    import torch

    from workers.anonymize import SPEC, detect_options
    from workers.models.faces import load_face_detector

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    model_dir = Path(os.environ.get("EPHEMERA_MODEL_DIR") or REPO / "var" / "models")
    detector = load_face_detector(model_dir, None)
    # The options anonymize runs with (at the commit that wrote the file, the
    # plain params: CenterFace then ran on the whole 960 detection copy).
    options = detect_options(SPEC.validate_params({}))
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    out: dict[str, object] = {
        "generated_by": "tests/workers/models/data/make_face_baseline.py",
        "code_commit": commit,
        "options": "anonymize defaults: " + repr(options),
        "photos": {},
    }
    for name in PHOTOS:
        each = detector.detect_each(photo(name), options)
        out["photos"][name] = {  # type: ignore[index]
            det: {
                "boxes": [[round(float(v), 1) for v in box] for box in faces.boxes],
                "scores": [round(float(s), 4) for s in faces.scores],
            }
            for det, faces in each.items()
        }
        print(name, {det: len(f) for det, f in each.items()})
    (HERE / "face_baseline.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

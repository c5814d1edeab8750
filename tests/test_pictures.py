"""The run's pictures: each one is written, is a real PNG, and shows the data it claims."""
import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

import lenet_edge  # noqa: F401
from lenet_edge import pictures

ROOT = Path(__file__).resolve().parents[1]


def test_confusion_matrix_counts():
    from lenet_edge.model import confusion_matrix
    m = confusion_matrix(np.array([0, 1, 1, 2, 9]), np.array([0, 1, 7, 2, 4]))
    assert m.sum() == 5 and np.trace(m) == 3 and m[1, 7] == 1 and m[9, 4] == 1


def test_write_all_draws_five_readable_pngs(tmp_path, mnist, converted):
    history = [{"epoch": e, "loss": 3.0 / e, "train_error": 5.0 / e, "val_error": 4.0 / e} for e in (1, 2, 3)]
    (tmp_path / "history.json").write_text(json.dumps(history))
    (tmp_path / "qat_history.json").write_text(json.dumps([{"epoch": 1, "loss": 1.1, "train_error": 1.5,
                                                            "val_error": 1.4}]))
    small = dataclasses.replace(mnist, x_test=mnist.x_test[:300], y_test=mnist.y_test[:300],
                                raw_test=mnist.raw_test[:300])
    written = pictures.write_all(tmp_path, ROOT / "export", converted["model"], small, verbose=False)
    assert [p.name for p in written] == list(pictures.PICTURES)
    for p in written:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] >= 400 and im.size[1] >= 150
            assert np.asarray(im.convert("L")).std() > 10  # not blank
    assert not list(tmp_path.glob("*.tmp"))

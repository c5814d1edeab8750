"""python -m lenet_edge.predict on images the tests draw and save themselves."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import lenet_edge  # noqa: F401
from lenet_edge import predict

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "export"


@pytest.fixture(scope="module")
def digit_dir(tmp_path_factory, mnist):
    """20 MNIST test digits as files in four styles, plus two hand-drawn digits."""
    d = tmp_path_factory.mktemp("digits")
    for i in range(20):
        a, label = mnist.raw_test[i], int(mnist.y_test[i])
        Image.fromarray(a).resize((84, 84), Image.BILINEAR).save(d / f"{i:02d}_grey_{label}.png")
        Image.fromarray(255 - a).resize((50, 70)).convert("RGB").save(d / f"{i:02d}_inverted_{label}.jpg", quality=95)
        rgb = np.stack([a, a // 2, 255 - a], -1).astype(np.uint8)  # coloured ink on a blue-ish background
        Image.fromarray(rgb).resize((140, 140)).save(d / f"{i:02d}_colour_{label}.png")
        rgba = np.zeros((28, 28, 4), np.uint8)
        rgba[..., 3] = a  # black ink whose alpha is the digit, on a transparent background
        Image.fromarray(rgba, "RGBA").resize((56, 56)).save(d / f"{i:02d}_alpha_{label}.png")
        Image.fromarray(255 - a).save(d / f"{i:02d}_pgm_{label}.pgm")
    one = Image.new("L", (200, 300), 230)
    ImageDraw.Draw(one).line([(100, 40), (100, 260)], fill=20, width=22)
    one.save(d / "drawn_one_1.png")
    zero = Image.new("RGB", (300, 300), (10, 10, 40))
    ImageDraw.Draw(zero).ellipse([90, 50, 210, 250], outline=(250, 250, 250), width=20)
    zero.save(d / "drawn_zero_0.png")
    return d


@pytest.fixture(scope="module")
def tflm():
    return predict.Classifier("tflm", BUNDLE)


def _label(path):
    return int(Path(path).stem.rsplit("_", 1)[1])


def test_preprocessing_reproduces_mnist_framing(mnist):
    """An MNIST digit (already 20x20-boxed, mass-centred) comes back nearly unchanged."""
    for i in range(10):
        raw = mnist.raw_test[i]
        again = predict.mnist_like(raw.astype(np.float32) / 255.0)
        assert again.shape == (28, 28) and again.dtype == np.uint8
        assert np.corrcoef(raw.ravel().astype(float), again.ravel().astype(float))[0, 1] > 0.8
        ys, xs = np.nonzero(again > 64)
        assert 20 <= max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 <= 21


def test_every_style_of_the_same_digit_gets_the_same_label(digit_dir, tflm):
    preds, errors = predict.classify(predict.image_paths([str(digit_dir)]), tflm)
    assert not errors and len(preds) == 102
    by_digit = {}
    for p in preds:
        by_digit.setdefault(Path(p.path).name[:2], []).append(p.digit)
    same = sum(len(set(v)) == 1 for k, v in by_digit.items() if k.isdigit())
    assert same >= 19  # grey, inverted JPEG, colour, alpha and PGM agree on (almost) every digit
    correct = sum(p.digit == _label(p.path) for p in preds)
    assert correct >= 97, [(Path(p.path).name, p.digit) for p in preds if p.digit != _label(p.path)]
    drawn = {Path(p.path).name: p.digit for p in preds if "drawn" in p.path}
    assert drawn == {"drawn_one_1.png": 1, "drawn_zero_0.png": 0}


def test_backends_agree_and_outputs_are_distances(digit_dir, tflm):
    paths = sorted(digit_dir.glob("0*_grey_*.png"))
    int8, _ = predict.classify(paths, tflm)
    keras, _ = predict.classify(paths, predict.Classifier("keras", BUNDLE))
    litert, _ = predict.classify(paths, predict.Classifier("tflite", BUNDLE))
    assert [p.digit for p in int8] == [p.digit for p in keras] == [p.digit for p in litert]
    for a, b in zip(int8, keras):
        assert len(a.distances) == 10 and min(a.distances) >= 0
        assert np.allclose(a.distances, b.distances, rtol=0.06, atol=2.0)  # int8 output step is about 0.71
        assert 0.5 < a.confidence <= 1.0 and a.margin > 0


def test_confidence_drops_for_an_ambiguous_digit():
    c = predict.confidence(np.array([[0.0, 50, 50, 50, 50, 50, 50, 50, 50, 50], [3.0, 3.5, 60, 60, 60, 60, 60, 60, 60, 60]]))
    assert c[0, 0] > 0.999 and 0.5 < c[1, 0] < 0.7 and np.allclose(c.sum(1), 1)


def test_cli_directory_and_bad_files(digit_dir, tmp_path, capsys):
    bad = tmp_path / "inputs"
    bad.mkdir()
    Image.open(digit_dir / "00_grey_7.png").save(bad / "good_7.png")
    (bad / "notes.png").write_text("not an image")
    (bad / "empty.jpg").write_bytes(b"")
    Image.new("L", (64, 64), 255).save(bad / "blank.png")
    Image.new("1", (6000, 5000), 0).save(bad / "huge.png")
    truncated = (digit_dir / "01_grey_2.png").read_bytes()
    (bad / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    rc = predict.main([str(bad)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "good_7.png: 7  confidence" in out and out.count("\n") == 1
    assert "notes.png: not an image" in err
    assert "empty.jpg: the file is empty" in err
    assert "blank.png: no digit found" in err
    assert "huge.png: 6000x5000 pixels is more than the 25,000,000-pixel limit" in err
    assert "truncated.png" in err
    assert predict.main([str(tmp_path / "missing.png")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    assert predict.main([str(empty_dir)]) == 2
    assert "no image files" in capsys.readouterr().err


def test_cli_json_output(digit_dir, capsys):
    import json
    assert predict.main(["--json", "--backend", "keras", str(digit_dir / "drawn_one_1.png")]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["digit"] == 1 and row["backend"] == "keras" and len(row["distances"]) == 10

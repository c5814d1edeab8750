"""Classify digit images with the float model or the int8 bundle.

    python -m lenet_edge.predict digit.png photo.jpg scans/        # int8 TFLite Micro (default)
    python -m lenet_edge.predict --backend keras digit.png

Any size, grey or colour; dark-on-light or light-on-dark is detected from the
border. Each image is preprocessed as MNIST was made: the digit's bounding box is
scaled to fit a 20x20 box (aspect kept), placed in 28x28 with its centre of mass at
the centre, then padded to the model's 32x32 input. Prints the predicted class, the
ten RBF distances (the smallest wins), the margin to the runner-up distance, and a
confidence: exp(-y_c) / sum_i exp(-y_i), the predicted class's share of the paper's
exp(-y) class scores (eq. 9 without its constant "rubbish" term). Distances of clean
digits differ by tens of units, so the confidence is 1.0000 unless the digit is
ambiguous; the margin says more.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".pbm", ".ppm", ".pnm", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 25_000_000  # 5000 x 5000
BACKENDS = ("tflm", "tflite", "keras")


class ImageInputError(ValueError):
    """An input file that cannot be classified (not an image, empty, huge, no digit in it)."""


# ------------------------------------------------------------ preprocessing
def load_grey(path: str | Path) -> np.ndarray:
    """The image as float32 grey levels in [0, 1] (alpha composited on white)."""
    from PIL import Image, UnidentifiedImageError
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageInputError(f"{path}: cannot read it ({e.strerror})") from None
    if size == 0:
        raise ImageInputError(f"{path}: the file is empty; give a PNG, JPEG or PGM image of a digit")
    if size > MAX_FILE_BYTES:
        raise ImageInputError(f"{path}: {size:,} bytes is more than the {MAX_FILE_BYTES:,}-byte limit for a digit "
                              "image; crop or downscale it first")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageInputError(f"{path}: {w}x{h} pixels is more than the {MAX_PIXELS:,}-pixel limit; "
                                      "crop the digit or downscale the image first")
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, rgba)
            grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except UnidentifiedImageError:
        raise ImageInputError(f"{path}: not an image PIL can read; give a PNG, JPEG or PGM file") from None
    except Image.DecompressionBombError:
        raise ImageInputError(f"{path}: the image is too large (decompression bomb check); crop or downscale it") \
            from None
    except OSError as e:
        raise ImageInputError(f"{path}: the image data is damaged or truncated ({e})") from None
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ImageInputError(f"{path}: unexpected image shape {grey.shape}")
    return grey


def ink_from_grey(grey: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1] (1 = stroke): the border's median grey is the background,
    so dark-on-light images are inverted and light-on-dark ones kept."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    ink = (background - grey) if background > 0.5 else (grey - background)
    ink = np.clip(ink, 0.0, None)
    peak = float(ink.max())
    return ink / peak if peak > 0 else ink


def mnist_like(grey: np.ndarray, name: str = "image") -> np.ndarray:
    """grey [0,1] image -> uint8 28x28 MNIST-style digit (light on dark)."""
    from PIL import Image
    ink = ink_from_grey(grey)
    mask = ink > 0.25
    if mask.sum() < 2 or ink.max() < 0.2:
        raise ImageInputError(f"{name}: no digit found (the image is blank or has no contrast)")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray((crop * 255).astype(np.uint8)).resize((nw, nh), Image.LANCZOS)
    small = np.asarray(small, dtype=np.float32)
    canvas = np.zeros((28, 28), np.float32)
    top, left = (28 - nh) // 2, (28 - nw) // 2
    canvas[top:top + nh, left:left + nw] = small
    total = canvas.sum()
    yy, xx = np.mgrid[:28, :28]
    cy, cx = (yy * canvas).sum() / total, (xx * canvas).sum() / total
    # MNIST's digits have their centre of mass at about (14, 14) in index coordinates.
    dy, dx = int(round(14.0 - cy)), int(round(14.0 - cx))
    # Shift by the centre of mass, within the 28x28 frame (as MNIST did).
    dy = int(np.clip(dy, -top, 28 - nh - top))
    dx = int(np.clip(dx, -left, 28 - nw - left))
    canvas = np.roll(canvas, (dy, dx), axis=(0, 1))
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


def image_paths(args: list[str]) -> list[Path]:
    """Files as given; a directory gives every image file in it (sorted)."""
    out = []
    for a in args:
        p = Path(a)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageInputError(f"{p}: directory has no image files ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(p)
    return out


# ------------------------------------------------------------ backends
class Classifier:
    """Returns float RBF distances (N, 10) for float32 (N, 32, 32, 1) inputs."""

    def __init__(self, backend: str, bundle: Path):
        from lenet_edge import export, verify
        self.backend = backend
        bundle = Path(bundle)
        if backend == "keras":
            import tf_keras as keras

            import lenet_edge.model  # noqa: F401  (registers the custom layers)
            path = bundle / verify.KERAS_FLOAT
            if not path.exists():
                raise ImageInputError(f"{path} is missing; run `make train` or restore export/ from git")
            self.model = keras.models.load_model(path, compile=False)
            return
        verify.check_bundle(bundle)
        self.int8 = (bundle / verify.INT8_MODEL).read_bytes()
        self.io = export.io_quantization(self.int8)

    def distances(self, x: np.ndarray) -> np.ndarray:
        from lenet_edge import verify
        if self.backend == "keras":
            return np.asarray(self.model.predict(x, verbose=0), dtype=np.float64)
        xq = verify.quantize_for(self.int8, x)
        out = verify.run_litert(self.int8, xq) if self.backend == "tflite" else verify.run_tflm(self.int8, xq)
        q = self.io["output"]
        return (out.astype(np.float64) - q["zero_point"]) * q["scale"]


def confidence(distances: np.ndarray) -> np.ndarray:
    """exp(-y_i) / sum_k exp(-y_k) per class (a softmax of the negated RBF distances)."""
    d = np.asarray(distances, np.float64)
    e = np.exp(-(d - d.min(axis=-1, keepdims=True)))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Prediction:
    path: str
    digit: int
    confidence: float
    margin: float
    distances: list


def classify(paths: list[Path], classifier: Classifier) -> tuple[list[Prediction], list[str]]:
    from lenet_edge.data import preprocess
    images, kept, errors = [], [], []
    for p in paths:
        try:
            images.append(mnist_like(load_grey(p), str(p)))
            kept.append(p)
        except ImageInputError as e:
            errors.append(str(e))
    if not images:
        return [], errors
    d = classifier.distances(preprocess(np.stack(images)))
    conf = confidence(d)
    preds = [Prediction(str(p), int(np.argmin(row)), float(c[np.argmin(row)]), float(np.diff(np.sort(row)[:2])[0]),
                        [float(v) for v in row]) for p, row, c in zip(kept, d, conf)]
    return preds, errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lenet_edge.predict", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", help="image files (PNG, JPEG, PGM, ...) or directories of them")
    ap.add_argument("--backend", choices=BACKENDS, default="tflm",
                    help="tflm: int8 TFLite Micro (default); tflite: int8 LiteRT; keras: the float model")
    ap.add_argument("--bundle", default="export", help="bundle directory (default: export)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per image")
    args = ap.parse_args(argv)
    from lenet_edge import verify
    try:
        paths = image_paths(args.images)
        classifier = Classifier(args.backend, Path(args.bundle))
    except (ImageInputError, verify.BundleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    preds, errors = classify(paths, classifier)
    for p in preds:
        if args.json:
            import json
            print(json.dumps({"path": p.path, "digit": p.digit, "confidence": round(p.confidence, 6),
                              "margin": round(p.margin, 4),
                              "distances": [round(v, 4) for v in p.distances], "backend": args.backend}))
        else:
            dist = " ".join(f"{v:.2f}" for v in p.distances)
            print(f"{p.path}: {p.digit}  confidence {p.confidence:.4f}  margin {p.margin:.2f}  distances (0..9) {dist}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

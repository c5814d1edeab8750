"""PNG pictures of a run: training curves, int8 confusion matrix, misclassified digits,
RBF prototypes and C1 feature maps.

    python -m lenet_edge.pictures [--run-dir runs/default] [--bundle export]

`make train` writes them into the run directory. Every figure is drawn from the
run's files (history.json, qat_history.json, model_float.keras) and the bundle's
int8 model run in TFLite Micro on the MNIST test set.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lenet_edge.fileio import atomic_write

PICTURES = {
    "training_curves.png": "loss and train/validation error per epoch, float then QAT",
    "confusion_int8.png": "confusion matrix of the int8 model (TFLite Micro) on the 10,000 test images",
    "misclassified_int8.png": "every test digit the int8 model gets wrong, true -> predicted",
    "rbf_prototypes.png": "the ten fixed 7x12 RBF prototypes",
    "c1_feature_maps.png": "one test digit and its six C1 feature maps (float model)",
}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    """Renders to memory, then writes atomically (no half-written PNG on Ctrl-C)."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    atomic_write(path, buf.getvalue())


def training_curves(history: list[dict], qat_history: list[dict], path: Path) -> None:
    plt = _plt()
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
    ep = [h["epoch"] for h in history]
    ax_loss.plot(ep, [h["loss"] for h in history], "o-", label="float training loss")
    ax_err.plot(ep, [h["train_error"] for h in history], "o-", label="float training error")
    ax_err.plot(ep, [h["val_error"] for h in history], "s-", label="float validation error")
    if qat_history:
        qe = [len(history) + h["epoch"] for h in qat_history]
        ax_loss.plot(qe, [h["loss"] for h in qat_history], "D", color="C3", label="QAT training loss")
        ax_err.plot(qe, [h["train_error"] for h in qat_history], "D", color="C3", label="QAT training error")
        if qat_history[0].get("val_error") is not None:
            ax_err.plot(qe, [h["val_error"] for h in qat_history], "^", color="C4", label="QAT validation error")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    ax_loss.set(xlabel="epoch", ylabel="MAP loss (per image)", title="Loss", yscale="log")
    ax_err.set(xlabel="epoch", ylabel="error (%)", title="Error rate", yscale="log")
    losses = [h["loss"] for h in history + qat_history]
    ax_loss.set_yticks([t for t in (0.2, 0.5, 1, 2, 3, 5, 10, 20, 50, 100) if min(losses) / 2 <= t <= 2 * max(losses)])
    ax_err.set_yticks([t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50) if t <= 2 * max(
        [h["train_error"] for h in history] + [h["val_error"] or 0 for h in history])])
    for ax in (ax_loss, ax_err):
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    _save(fig, path)


def confusion_plot(m: np.ndarray, title: str, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 6))
    off = m.astype(float).copy()
    np.fill_diagonal(off, np.nan)  # colour the errors; the diagonal would swamp them
    im = ax.imshow(off, cmap="Reds")
    for i in range(10):
        for j in range(10):
            if m[i, j]:
                dark = i != j and m[i, j] > 0.6 * np.nanmax(off)
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                        color="navy" if i == j else ("white" if dark else "black"),
                        weight="bold" if i == j else "normal")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true label",
           title=f"{title}\n{int(m.sum() - np.trace(m))} errors of {int(m.sum())} (diagonal: correct, in blue)")
    fig.colorbar(im, ax=ax, label="misclassified images")
    _save(fig, path)


MAX_MISCLASSIFIED_SHOWN = 192


def misclassified_plot(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, title: str,
                       path: Path) -> None:
    plt = _plt()
    all_wrong = np.flatnonzero(labels != predicted)
    wrong = all_wrong[:MAX_MISCLASSIFIED_SHOWN]
    cols = 12
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.2 + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"{labels[i]}->{predicted[i]}", fontsize=9)
    shown = (f"{len(wrong)} misclassified test digits" if len(wrong) == len(all_wrong) else
             f"the first {len(wrong)} of {len(all_wrong)} misclassified test digits")
    fig.suptitle(f"{title}: {shown} (true->predicted)")
    height = rows * 1.2 + 0.6
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))  # room for the title above the first row
    _save(fig, path)


def prototypes_plot(path: Path) -> None:
    from lenet_edge.layers import rbf_prototypes
    plt = _plt()
    protos = rbf_prototypes().reshape(10, 12, 7)
    fig, axes = plt.subplots(1, 10, figsize=(10, 2))
    for d, ax in enumerate(axes):
        ax.imshow(protos[d], cmap="gray_r", vmin=-1, vmax=1)
        ax.set_title(str(d))
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("RBF prototypes (fixed, +1 = black): the output unit for digit i is the distance to bitmap i")
    _save(fig, path)


def c1_maps_plot(model, x: np.ndarray, label: int, path: Path) -> None:
    import tf_keras as keras
    plt = _plt()
    c1 = keras.Model(model.input, model.get_layer("C1").output)(x[None], training=False).numpy()[0]
    fig, axes = plt.subplots(1, 7, figsize=(12, 2.3))
    axes[0].imshow(x[..., 0], cmap="gray_r")
    axes[0].set_title(f"input (label {label})")
    for k in range(6):
        axes[k + 1].imshow(c1[..., k], cmap="RdBu_r", vmin=-1, vmax=1)
        axes[k + 1].set_title(f"C1 map {k}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("C1 feature maps (28x28, tanh output; red positive, blue negative)")
    _save(fig, path)


def write_all(run_dir: Path, bundle: Path, model=None, data=None, predicted: np.ndarray | None = None,
              verbose: bool = True) -> list[Path]:
    """All five pictures into run_dir; returns their paths.

    predicted: the int8 model's TFLM predictions on data's test set, if already computed.
    """
    import tf_keras as keras

    from lenet_edge import verify
    from lenet_edge.data import load_mnist
    from lenet_edge.model import confusion_matrix
    run_dir, bundle = Path(run_dir), Path(bundle)
    data = data or load_mnist(verbose=False)
    if model is None:
        import lenet_edge.model  # noqa: F401  (custom layers)
        model = keras.models.load_model(run_dir / "model_float.keras", compile=False)
    history = json.loads((run_dir / "history.json").read_text())
    qat_path = run_dir / "qat_history.json"
    qat_history = json.loads(qat_path.read_text()) if qat_path.exists() else []
    if predicted is None:
        int8 = (bundle / verify.INT8_MODEL).read_bytes()
        predicted = np.argmin(verify.run_tflm(int8, verify.quantize_for(int8, data.x_test)), axis=1)
    written = []
    training_curves(history, qat_history, run_dir / "training_curves.png")
    confusion_plot(confusion_matrix(data.y_test, predicted), "int8 LeNet-5 on TFLite Micro",
                   run_dir / "confusion_int8.png")
    misclassified_plot(data.raw_test, data.y_test, predicted, "int8 LeNet-5 (TFLite Micro)",
                       run_dir / "misclassified_int8.png")
    prototypes_plot(run_dir / "rbf_prototypes.png")
    c1_maps_plot(model, data.x_test[0], int(data.y_test[0]), run_dir / "c1_feature_maps.png")
    for name in PICTURES:
        written.append(run_dir / name)
        if verbose:
            print(f"wrote {run_dir / name}: {PICTURES[name]}")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lenet_edge.pictures", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", default="runs/default", help="run directory of `python -m lenet_edge.train`")
    ap.add_argument("--bundle", default="export", help="bundle with the int8 model (default: export)")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    missing = [n for n in ("history.json", "model_float.keras") if not (run_dir / n).exists()]
    if missing:
        print(f"error: {run_dir} has no {', '.join(missing)}; train first (`python -m lenet_edge.train "
              f"--run-dir {run_dir}`)", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("error: matplotlib is not installed; `pip install -e '.[plots]'` (make train installs it)",
              file=sys.stderr)
        return 2
    write_all(run_dir, Path(args.bundle))
    return 0


if __name__ == "__main__":
    sys.exit(main())

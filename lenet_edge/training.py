"""Float training of the faithful LeNet-5: data pipeline, distortions, checkpoints, resume.

The library half of ``python -m lenet_edge.train``; tests call these functions directly.

Determinism: every epoch's shuffle order and every distortion is a pure function of
(seed, epoch, batch), the model's initial weights are seeded, and TensorFlow's op
determinism is on, so a run resumed from a checkpoint ends with exactly the weights
of an uninterrupted run with the same config.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import lenet_edge  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

from lenet_edge.config import Config
from lenet_edge.data import BACKGROUND_VALUE, IMAGE_SIZE
from lenet_edge.fileio import atomic_write
from lenet_edge.model import ArgminAccuracy, MapLoss, predict_classes


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def set_determinism(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# ---------------------------------------------------------------- distortions
def random_affine(images: tf.Tensor, seed: tf.Tensor,
                  max_shift: float = 2.0, max_scale: float = 0.1,
                  max_squeeze: float = 0.1, max_shear: float = 0.15) -> tf.Tensor:
    """Random affine distortions as in the paper's best LeNet-5 run (Section III-C).

    Each image gets its own translation (±max_shift pixels), scaling (×1±max_scale),
    squeezing (x and y scaled in opposite directions by ±max_squeeze) and horizontal
    shearing (±max_shear), about the image centre, bilinear, background filled.

    Args:
      images: float32 (B, 32, 32, 1).
      seed: int32 shape (2,) stateless seed; same seed, same distortions.
    """
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 5)

    def u(i, limit):
        return tf.random.stateless_uniform([batch], seeds[i], -limit, limit)

    scale = 1.0 + u(0, max_scale)
    squeeze = u(1, max_squeeze)
    shear = u(2, max_shear)
    tx, ty = u(3, max_shift), u(4, max_shift)
    # Output pixel (x, y) samples input (x', y') = M (p - c) + c + t.
    a0, a1 = scale * (1.0 + squeeze), scale * shear
    b0, b1 = tf.zeros_like(scale), scale * (1.0 - squeeze)
    c = (IMAGE_SIZE - 1) / 2.0
    a2 = c - a0 * c - a1 * c + tx
    b2 = c - b0 * c - b1 * c + ty
    zeros = tf.zeros_like(scale)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=[IMAGE_SIZE, IMAGE_SIZE],
        interpolation="BILINEAR", fill_mode="CONSTANT", fill_value=BACKGROUND_VALUE)


def epoch_dataset(x: np.ndarray, y: np.ndarray, config: Config, epoch: int) -> tf.data.Dataset:
    """The training batches of one epoch: order (and distortions) fixed by (seed, epoch)."""
    order = np.random.default_rng([config.seed, epoch]).permutation(len(x))
    ds = tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(config.batch_size)
    if config.distort:
        base = tf.constant([config.seed, epoch], tf.int64)

        def distort(index, batch):
            images, labels = batch
            seed = tf.cast(tf.stack([base[0] * 1000003 + base[1], tf.cast(index, tf.int64)]), tf.int32)
            return random_affine(images, seed), labels

        ds = ds.enumerate().map(distort, num_parallel_calls=1, deterministic=True)
    return ds.prefetch(2)


# ---------------------------------------------------------------- checkpoints
def atomic_save_model(model: keras.Model, path: Path) -> None:
    """model.save() to a temporary file next to `path`, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    # The .keras format has no include_optimizer=False: detach the optimizer so the
    # file holds the model only (a third of the size; training state lives in checkpoints).
    optimizer = getattr(model, "optimizer", None)
    model.optimizer = None
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        model.optimizer = optimizer
        if tmp.exists():
            tmp.unlink()


class Checkpointer:
    """Per-epoch checkpoints (model, optimizer, training state) written atomically.

    Layout: ``<run>/checkpoints/epoch-NNN/`` (TF checkpoint + state.json), and
    ``<run>/checkpoints/latest`` naming the newest complete one. A checkpoint directory
    is written under a temporary name and renamed when complete; ``latest`` is
    replaced only after that, so a crash at any point leaves the previous checkpoint.
    """

    KEEP = 2

    def __init__(self, run_dir: Path, model: keras.Model, optimizer):
        self.root = Path(run_dir) / "checkpoints"
        self.ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)

    def save(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{state['epochs_done']:03d}"
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}."))
        try:
            self.ckpt.write(str(tmp / "ckpt"))
            (tmp / "state.json").write_text(json.dumps(state, indent=1))
            final = self.root / name
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic_write(self.root / "latest", name + "\n")
        for old in sorted(self.root.glob("epoch-*"))[:-self.KEEP]:
            shutil.rmtree(old, ignore_errors=True)

    def restore_latest(self) -> dict | None:
        """Restores model and optimizer from the newest checkpoint; returns its state or None."""
        marker = self.root / "latest"
        if not marker.exists():
            return None
        directory = self.root / marker.read_text().strip()
        self.ckpt.read(str(directory / "ckpt")).assert_existing_objects_matched()
        return json.loads((directory / "state.json").read_text())


class _NanGuard(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.bad_batch = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.bad_batch = batch
            self.model.stop_training = True


def make_optimizer(config: Config):
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=config.learning_rate_at(0))
    return keras.optimizers.SGD(learning_rate=config.learning_rate_at(0), momentum=0.9)


def error_rate(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Percentage of images whose argmin RBF distance is not the label."""
    if len(x) == 0:
        return float("nan")
    return float(np.mean(predict_classes(model.predict(x, batch_size=batch_size, verbose=0)) != y) * 100)


def fit_float(model: keras.Model, x_train, y_train, x_val, y_val, config: Config,
              run_dir: Path, resume: bool = False, verbose: int = 1) -> dict:
    """Trains `model` in place for config.epochs; returns the history.

    Checkpoints after every epoch; with resume=True continues from the newest
    checkpoint in run_dir (or starts fresh if there is none). At the end the model
    holds the weights of the epoch with the lowest validation error (the last epoch
    if there is no validation set).

    Raises:
      TrainingDiverged: the loss became NaN/inf; the last good checkpoint is kept.
    """
    optimizer = make_optimizer(config)
    model.compile(optimizer=optimizer, loss=MapLoss(config.map_j), metrics=[ArgminAccuracy()])
    checkpointer = Checkpointer(run_dir, model, optimizer)
    state = {"epochs_done": 0, "history": [], "best_val_error": None, "best_epoch": None}
    if resume:
        restored = checkpointer.restore_latest()
        if restored is not None:
            state = restored
            if verbose:
                print(f"Resuming after epoch {state['epochs_done']} from {checkpointer.root}")
        elif verbose:
            print(f"--resume: no checkpoint in {checkpointer.root}; starting from scratch")
    best_path = Path(run_dir) / "checkpoints" / "best.weights.h5"

    for epoch in range(state["epochs_done"], config.epochs):
        lr = config.learning_rate_at(epoch)
        keras.backend.set_value(optimizer.learning_rate, lr)
        guard = _NanGuard()
        start = time.perf_counter()
        if verbose:
            print(f"Epoch {epoch + 1}/{config.epochs} (learning rate {lr:g})")
        logs = model.fit(epoch_dataset(x_train, y_train, config, epoch), epochs=1,
                         verbose=verbose, callbacks=[guard]).history
        if guard.bad_batch is not None:
            raise TrainingDiverged(
                f"loss became {logs['loss'][-1] if logs.get('loss') else 'NaN/inf'} in epoch {epoch + 1} "
                f"(batch {guard.bad_batch}); stopped. The last good checkpoint "
                f"({state['epochs_done']} epochs) is kept in {checkpointer.root}. "
                "Lower --learning-rate or check the data, then run again (or --resume).")
        val_error = error_rate(model, x_val, y_val) if len(x_val) else None
        record = {"epoch": epoch + 1, "learning_rate": lr, "loss": float(logs["loss"][-1]),
                  "train_error": 100.0 * (1.0 - float(logs["accuracy"][-1])),
                  "val_error": val_error, "seconds": time.perf_counter() - start}
        state["history"].append(record)
        state["epochs_done"] = epoch + 1
        if val_error is None or state["best_val_error"] is None or val_error < state["best_val_error"]:
            state["best_val_error"], state["best_epoch"] = val_error, epoch + 1
            tmp = best_path.with_name(".best.tmp.weights.h5")
            best_path.parent.mkdir(parents=True, exist_ok=True)
            model.save_weights(tmp)
            os.replace(tmp, best_path)
        checkpointer.save(state)
        if verbose:
            print(f"  validation error {val_error if val_error is None else f'{val_error:.2f}%'}"
                  f" ({record['seconds']:.0f} s)")
    if best_path.exists():
        model.load_weights(best_path)
    return state

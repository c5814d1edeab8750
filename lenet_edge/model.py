"""LeNet-5 as in LeCun et al. 1998, Fig. 2: C1, S2, C3, S4, C5, F6, Euclidean RBF output.

    model = build_lenet5(seed=0)
    model.compile(optimizer=..., loss=MapLoss(j=0.1), metrics=[ArgminAccuracy()])

The model outputs the ten RBF distances y_i; the predicted class is argmin_i y_i.
"""
from __future__ import annotations

import numpy as np

import lenet_edge  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

from lenet_edge.layers import (C3_TABLE, EuclideanRBF, SquashedConv2D, SquashedDense,
                               Subsampling)

INPUT_SHAPE = (32, 32, 1)
NUM_CLASSES = 10

# Per-layer trainable parameter counts from the paper (Section II-B); the tests pin them.
PAPER_PARAMS = {"C1": 156, "S2": 12, "C3": 1516, "S4": 32, "C5": 48120, "F6": 10164, "RBF": 0}
PAPER_FIXED_PARAMS = {"RBF": 840}


def build_lenet5(seed: int = 0) -> keras.Model:
    """Builds the faithful LeNet-5 (untrained, weights uniform in ±2.4/fan-in).

    Args:
      seed: seeds every layer's initializer (each layer gets its own stream).
    """
    image = keras.Input(INPUT_SHAPE, name="image")
    x = SquashedConv2D(6, 5, input_gain=1.0, seed=seed * 100 + 1, name="C1")(image)  # 28x28x6
    x = Subsampling(seed=seed * 100 + 2, name="S2")(x)                                  # 14x14x6
    x = SquashedConv2D(16, 5, connections=C3_TABLE, seed=seed * 100 + 3, name="C3")(x)  # 10x10x16
    x = Subsampling(seed=seed * 100 + 4, name="S4")(x)                                  # 5x5x16
    x = SquashedConv2D(120, 5, seed=seed * 100 + 5, name="C5")(x)                       # 120 maps of 1x1
    x = SquashedDense(84, seed=seed * 100 + 6, name="F6")(x)                            # 84
    distances = EuclideanRBF(name="RBF")(x)                                             # 10
    return keras.Model(image, distances, name="lenet5")


def map_loss_per_sample(y_true, distances, j=0.1):
    """The MAP criterion of eq. (9) for each sample.

    E_p = y_{D_p} + log(e^{-j} + Σ_i e^{-y_i}), the log term by a stable log-sum-exp.
    """
    labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
    distances = tf.cast(distances, tf.float32)
    correct = tf.gather(distances, labels, axis=1, batch_dims=1)
    j_column = tf.fill([tf.shape(distances)[0], 1], -tf.constant(j, tf.float32))
    return correct + tf.reduce_logsumexp(tf.concat([j_column, -distances], axis=1), axis=1)


@keras.utils.register_keras_serializable(package="lenet_edge")
class MapLoss(keras.losses.Loss):
    """Eq. (9) averaged over the batch; `j` > 0 (the paper gives no value; 0.1 by default)."""

    def __init__(self, j=0.1, name="map_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not j > 0:
            raise ValueError(f"MAP loss constant j must be positive, got {j}")
        self.j = float(j)

    def call(self, y_true, y_pred):
        return map_loss_per_sample(y_true, y_pred, self.j)

    def get_config(self):
        return {**super().get_config(), "j": self.j}


@keras.utils.register_keras_serializable(package="lenet_edge")
class ArgminAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy with the prediction argmin_i y_i (the RBF output is a distance)."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(_argmin_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _argmin_accuracy(y_true, distances):
    labels = tf.cast(tf.reshape(y_true, [-1]), tf.int64)
    return tf.cast(tf.equal(tf.argmin(distances, axis=1), labels), tf.float32)


def predict_classes(distances: np.ndarray) -> np.ndarray:
    """Class predictions from RBF distances: the smallest distance wins."""
    return np.argmin(np.asarray(distances), axis=1)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    """Counts per (true label, predicted class): rows true, columns predicted."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (np.asarray(labels), np.asarray(predicted)), 1)
    return m


def parameter_counts(model: keras.Model) -> dict[str, tuple[int, int]]:
    """{layer name: (trainable, non-trainable)} for the model's layers with parameters."""
    out = {}
    for layer in model.layers:
        t = int(sum(np.prod(w.shape) for w in layer.trainable_weights))
        n = int(sum(np.prod(w.shape) for w in layer.non_trainable_weights))
        if t or n:
            out[layer.name] = (t, n)
    return out

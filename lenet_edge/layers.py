"""The custom layers of the original LeNet-5 (LeCun et al. 1998, Sections II-B, Appendix A).

The paper's squashing function is f(a) = A·tanh(S·a), A = 1.7159, S = 2/3, after
C1, S2, C3, S4, C5 and F6. Each layer here computes a = (its weights)·(its input) +
bias exactly as the paper does, but is split where an int8 runtime needs it:

  * S is folded into the layer's *effective* kernel and bias (S·W, S·b), so the
    graph is one linear op followed by a plain TANH;
  * A is folded into the *consumer's* effective kernel: each squashed layer outputs
    u = tanh(S·a) = f(a)/A, and the next layer multiplies its weights by A.

The trainable parameters are the paper's W and b, the function computed is exactly
the paper's, and gradients flow through the constant factors. In int8 TFLite every
squashed layer then lowers to CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED + TANH
with no extra MUL (TANH's int8 output scale is fixed at 1/128, see TRAPS.md), and
the RBF head applies A once with an int8 MUL.

Every layer exposes ``effective_kernel()``: the exact tensor that feeds its linear
op. Quantization-aware training fake-quantizes that tensor (quantization.py), so
C3's unconnected weights are zeros in the quantized kernel too.
"""
from __future__ import annotations

import numpy as np

import lenet_edge  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

A = 1.7159        # squashing amplitude (Appendix A)
S = 2.0 / 3.0     # squashing slope (Appendix A)


def squash(a):
    """The paper's squashing function f(a) = A·tanh(S·a); f(±1) ≈ ±1."""
    return A * tf.tanh(S * a)


# Table I: which S2 maps (rows 0-5) feed each C3 map (columns 0-15).
C3_TABLE_ROWS = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)
C3_TABLE = np.array([[c == "X" for c in row] for row in C3_TABLE_ROWS], dtype=bool)  # (6, 16)


class _PaperInit(keras.initializers.Initializer):
    """U(-2.4/F, 2.4/F) with F the fan-in of the unit; F broadcast over the last axis."""

    def __init__(self, fan_in, seed=None):
        self.fan_in = [float(f) for f in np.ravel(fan_in)]
        self.seed = seed

    def __call__(self, shape, dtype=None, **kwargs):
        limit = 2.4 / np.asarray(self.fan_in, np.float32)
        if limit.size > 1:
            limit = limit.reshape((1,) * (len(shape) - 1) + (-1,))
        u = tf.random.stateless_uniform(shape, seed=[self.seed or 0, 1], minval=-1.0, maxval=1.0)
        return tf.cast(u * limit, dtype or tf.float32)

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": self.seed}


class _Squashed(keras.layers.Layer):
    """Base: a linear op on the (A-scaled) input, plus bias, then tanh(S·a).

    Subclasses define the parameters and ``_linear(x, kernel)``. ``activation`` is
    a plain ``keras.activations.tanh`` attribute so that tfmot's QuantizeAwareActivation
    can quantize the pre-activation tensor (the TANH op's int8 input).
    """

    def __init__(self, input_gain=A, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.input_gain = float(input_gain)  # A for squashed inputs, 1 for the raw image
        self.seed = seed
        self.activation = keras.activations.tanh
        self.quantized_kernel = None  # set by the QAT wrapper each call (quantization.py)

    def _kernel_variable(self):
        raise NotImplementedError

    def _dense_kernel(self, variable):
        """The paper's weights laid out as the linear op's kernel (no scaling)."""
        return variable

    def effective_kernel(self, variable=None):
        """The tensor that feeds the linear op: S·A_in·W, laid out for the op."""
        variable = self._kernel_variable() if variable is None else variable
        return self._dense_kernel(variable) * (S * self.input_gain)

    def call(self, inputs):
        kernel = self.quantized_kernel if self.quantized_kernel is not None else self.effective_kernel()
        z = self._linear(inputs, kernel) + S * self.bias
        return self.activation(z)

    def get_config(self):
        return {**super().get_config(), "input_gain": self.input_gain, "seed": self.seed}


@keras.utils.register_keras_serializable(package="lenet_edge")
class SquashedConv2D(_Squashed):
    """Valid 5x5 convolution + squashing (C1, C3, C5), with an optional connection table.

    Args:
      filters: number of output maps.
      kernel_size: square kernel size.
      connections: optional (in_maps, filters) boolean table (Table I for C3). Only
        connected (input map, output map) pairs have parameters; the dense kernel is
        built by a gather from the packed parameters and a constant zero, so
        unconnected weights are zero by construction, whatever training does.
    """

    def __init__(self, filters, kernel_size=5, connections=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.connections = None if connections is None else np.asarray(connections, bool).tolist()

    def build(self, input_shape):
        in_maps = int(input_shape[-1])
        k = self.kernel_size
        self._full_connection = (input_shape[1] == k and input_shape[2] == k)
        if self.connections is None:
            fan_in = [k * k * in_maps] * self.filters
            self.kernel = self.add_weight("kernel", (k, k, in_maps, self.filters),
                                          initializer=_PaperInit(fan_in, self.seed))
            self._gather_index = None
        else:
            table = np.asarray(self.connections, bool)
            if table.shape != (in_maps, self.filters):
                raise ValueError(f"{self.name}: connections must have shape ({in_maps}, {self.filters}), "
                                 f"got {table.shape}")
            # Packed parameters ordered output map by output map, input maps ascending.
            pairs = [(i, o) for o in range(self.filters) for i in range(in_maps) if table[i, o]]
            index = np.full((in_maps, self.filters), len(pairs), np.int32)  # -> the zero slot
            for n, (i, o) in enumerate(pairs):
                index[i, o] = n
            self._gather_index = tf.constant(index)
            fan_in = [k * k * int(table[:, o].sum()) for o in range(self.filters)]
            pair_fan_in = [fan_in[o] for (_, o) in pairs]
            self.kernel = self.add_weight("kernel", (k, k, len(pairs)),
                                          initializer=_PaperInit(pair_fan_in, self.seed))
        self.bias = self.add_weight("bias", (self.filters,),
                                    initializer=_PaperInit(fan_in, None if self.seed is None else self.seed + 7))
        super().build(input_shape)

    def _kernel_variable(self):
        return self.kernel

    def _dense_kernel(self, variable):
        if self._gather_index is None:
            return variable
        k = self.kernel_size
        padded = tf.concat([variable, tf.zeros((k, k, 1), variable.dtype)], axis=-1)
        return tf.gather(padded, self._gather_index, axis=-1)  # (k, k, in, out)

    @property
    def is_full_connection(self):
        """True when the kernel covers the whole input (C5): each output map is 1x1."""
        return self._full_connection

    def _linear(self, x, kernel):
        if self._full_connection:
            # A 5x5 kernel on a 5x5 input is a full connection (the paper's C5): one
            # matrix product over the (h, w, c)-flattened input, so the graph has a
            # FULLY_CONNECTED op and the 120 maps of size 1x1 come out as a vector.
            k = self.kernel_size
            flat_in = tf.reshape(x, (-1, k * k * kernel.shape[2]))
            return tf.matmul(flat_in, tf.reshape(kernel, (-1, self.filters)))
        return tf.nn.conv2d(x, kernel, strides=1, padding="VALID")

    def compute_output_shape(self, input_shape):
        k = self.kernel_size
        if self._full_connection:
            return tf.TensorShape([input_shape[0], self.filters])
        return tf.TensorShape([input_shape[0], input_shape[1] - k + 1, input_shape[2] - k + 1, self.filters])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "connections": self.connections}


@keras.utils.register_keras_serializable(package="lenet_edge")
class Subsampling(_Squashed):
    """S2/S4: each map sums its 2x2 blocks, times one trainable coefficient, plus one bias.

    Lowered as a 2x2 stride-2 depthwise convolution whose four taps all equal the
    map's coefficient (times S·A): 2 parameters per map, not a pooling layer.
    """

    def build(self, input_shape):
        maps = int(input_shape[-1])
        self.coefficient = self.add_weight("coefficient", (maps,), initializer=_PaperInit([4] * maps, self.seed))
        self.bias = self.add_weight("bias", (maps,),
                                    initializer=_PaperInit([4] * maps, None if self.seed is None else self.seed + 7))
        super().build(input_shape)

    def _kernel_variable(self):
        return self.coefficient

    def _dense_kernel(self, variable):
        return tf.tile(tf.reshape(variable, (1, 1, -1, 1)), (2, 2, 1, 1))  # (2, 2, maps, 1)

    def _linear(self, x, kernel):
        return tf.nn.depthwise_conv2d(x, kernel, strides=(1, 2, 2, 1), padding="VALID")

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], input_shape[1] // 2, input_shape[2] // 2, input_shape[3]])


@keras.utils.register_keras_serializable(package="lenet_edge")
class SquashedDense(_Squashed):
    """F6: fully connected layer + squashing."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", (fan_in, self.units),
                                      initializer=_PaperInit([fan_in] * self.units, self.seed))
        self.bias = self.add_weight("bias", (self.units,),
                                    initializer=_PaperInit([fan_in] * self.units,
                                                           None if self.seed is None else self.seed + 7))
        super().build(input_shape)

    def _kernel_variable(self):
        return self.kernel

    def _linear(self, x, kernel):
        return tf.matmul(x, kernel)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.units])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


# The ten fixed RBF prototypes: 7-wide, 12-tall stylised digits ('#' = +1 ink, '.' = -1).
DIGIT_BITMAPS = (
    ("..###..", ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),
    ("...#...", "..##...", ".#.#...", "...#...", "...#...", "...#...",
     "...#...", "...#...", "...#...", "...#...", "...#...", ".#####."),
    (".#####.", "#.....#", "......#", "......#", ".....#.", "....#..",
     "...#...", "..#....", ".#.....", "#......", "#......", "#######"),
    (".#####.", "#.....#", "......#", "......#", "......#", "..####.",
     "......#", "......#", "......#", "......#", "#.....#", ".#####."),
    ("....##.", "...#.#.", "..#..#.", ".#...#.", "#....#.", "#....#.",
     "#######", ".....#.", ".....#.", ".....#.", ".....#.", ".....#."),
    ("#######", "#......", "#......", "#......", "######.", "......#",
     "......#", "......#", "......#", "......#", "#.....#", ".#####."),
    ("..####.", ".#.....", "#......", "#......", "#.####.", "##....#",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),
    ("#######", "......#", "......#", ".....#.", ".....#.", "....#..",
     "....#..", "...#...", "...#...", "..#....", "..#....", "..#...."),
    (".#####.", "#.....#", "#.....#", "#.....#", ".#...#.", "..###..",
     ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#", ".#####."),
    (".#####.", "#.....#", "#.....#", "#.....#", "#.....#", ".######",
     "......#", "......#", "......#", ".....#.", "....#..", ".###..."),
)


def rbf_prototypes() -> np.ndarray:
    """The (10, 84) ±1 prototype matrix, row i = digit i's 12x7 bitmap flattened row-major."""
    rows = []
    for digit, bitmap in enumerate(DIGIT_BITMAPS):
        if len(bitmap) != 12 or any(len(r) != 7 or set(r) - {"#", "."} for r in bitmap):
            raise AssertionError(f"bitmap for digit {digit} is not 12 rows of 7 '#'/'.' characters")
        rows.append([1.0 if c == "#" else -1.0 for r in bitmap for c in r])
    return np.array(rows, np.float32)


def render_prototypes() -> str:
    """The ten prototypes as text, side by side, so a person can check they are digits."""
    lines = []
    for r in range(12):
        lines.append("  ".join(DIGIT_BITMAPS[d][r].replace(".", " ") for d in range(10)))
    return "\n".join(["  ".join(f"{d:^7}" for d in range(10))] + lines)


@keras.utils.register_keras_serializable(package="lenet_edge")
class EuclideanRBF(keras.layers.Layer):
    """Output layer: y_i = Σ_j (x_j − w_ij)² with fixed ±1 prototypes; prediction = argmin_i y_i.

    The input is F6's u = tanh(S·a); x = A·u is the paper's F6 output. The three
    ``*_hook`` attributes are identity activations at the tensors an int8 graph
    materialises (x, the prototypes, the squared differences), so that QAT can
    place fake-quantization there (quantization.py). In TFLite this is
    RESHAPE -> MUL -> SQUARED_DIFFERENCE -> SUM.
    """

    def __init__(self, input_gain=A, **kwargs):
        super().__init__(**kwargs)
        self.input_gain = float(input_gain)
        self.input_hook = keras.activations.linear
        self.prototype_hook = keras.activations.linear
        self.difference_hook = keras.activations.linear

    def build(self, input_shape):
        if int(input_shape[-1]) != 84:
            raise ValueError(f"{self.name}: expects 84 inputs (F6), got {input_shape[-1]}")
        self.prototypes = self.add_weight(
            "prototypes", (10, 84), trainable=False,
            initializer=keras.initializers.Constant(rbf_prototypes()))
        super().build(input_shape)

    def call(self, inputs):
        x = self.input_hook(tf.reshape(inputs, (-1, 1, 84)) * self.input_gain)
        w = self.prototype_hook(tf.convert_to_tensor(self.prototypes))
        d = self.difference_hook(tf.math.squared_difference(x, w))  # (N, 1, 84) - (10, 84) -> (N, 10, 84)
        return tf.reduce_sum(d, axis=-1)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], 10])

    def get_config(self):
        return {**super().get_config(), "input_gain": self.input_gain}

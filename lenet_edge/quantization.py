"""Quantization-aware training of the faithful LeNet-5 with tfmot, and its QuantizeConfigs.

One QuantizeConfig per custom layer (layers.py), registered in one scope used by
every load path (`quantize_scope()`):

  * Squashed layers (C1, S2, C3, S4, C5, F6): the *effective* kernel (the exact tensor
    feeding CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED, with C3's zeros and the
    folded constants) is fake-quantized symmetric, narrow range, per output channel
    for convolutions (per tensor for depthwise and dense, as TFLite and tfmot do);
    the TANH input (pre-activation) gets a learned range; the TANH output gets
    TFLite's fixed int8 range [-1, 127/128] (scale 1/128, zero point 0).
  * RBF: learned ranges for A·u, the prototypes and the squared differences, and for
    the output distances. The prototypes are not handed to tfmot as weights, so they
    stay fixed (tfmot makes weights it quantizes trainable).

    qat = quantize_model(float_model)   # float weights carried over
"""
from __future__ import annotations

import contextlib

import lenet_edge  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from lenet_edge.layers import EuclideanRBF, SquashedConv2D, SquashedDense, Subsampling
from lenet_edge.model import ArgminAccuracy, MapLoss

Quantizer = tfmot.quantization.keras.quantizers.Quantizer
QuantizeConfig = tfmot.quantization.keras.QuantizeConfig

TANH_OUTPUT_MIN = -1.0
TANH_OUTPUT_MAX = 127.0 / 128.0  # int8 TANH output: scale 1/128, zero point 0


@keras.utils.register_keras_serializable(package="lenet_edge")
class EffectiveKernelQuantizer(Quantizer):
    """Fake-quantizes a squashed layer's effective kernel, not its raw variable.

    tfmot hands this quantizer the layer's parameter variable; it builds the kernel
    that actually feeds the linear op (layer.effective_kernel), then fake-quantizes
    that tensor, symmetric and narrow range (int8 weights in [-127, 127]), the range
    taken from the current values (tfmot's "last value" scheme).
    """

    def __init__(self, per_channel: bool):
        self.per_channel = bool(per_channel)

    def build(self, tensor_shape, name, layer):
        target = layer.layer  # the wrapped squashed layer
        channels = int(target.effective_kernel().shape[-1]) if self.per_channel else None
        shape = (channels,) if self.per_channel else ()
        return {
            "max_var": layer.add_weight(name + "_max", shape=shape, trainable=False,
                                        initializer=keras.initializers.Constant(1.0)),
            "target": target,
        }

    def __call__(self, inputs, training, weights, **kwargs):
        kernel = weights["target"].effective_kernel(inputs)
        max_var = weights["max_var"]
        if training:
            axes = list(range(kernel.shape.rank - 1)) if self.per_channel else None
            current = tf.maximum(tf.reduce_max(tf.abs(kernel), axis=axes), 1e-8)
            max_var.assign(current)
            bound = current
        else:
            bound = tf.identity(max_var)
        if self.per_channel:
            return tf.quantization.fake_quant_with_min_max_vars_per_channel(
                kernel, -bound, bound, num_bits=8, narrow_range=True)
        return tf.quantization.fake_quant_with_min_max_vars(kernel, -bound, bound, num_bits=8, narrow_range=True)

    def get_config(self):
        return {"per_channel": self.per_channel}

    def __eq__(self, other):
        return isinstance(other, EffectiveKernelQuantizer) and self.per_channel == other.per_channel

    def __ne__(self, other):
        return not self.__eq__(other)


@keras.utils.register_keras_serializable(package="lenet_edge")
class RangeQuantizer(Quantizer):
    """Asymmetric 8-bit fake-quantization with a learned (moving-average) range.

    Unlike tfmot's MovingAverageQuantizer, whose range starts at ±6 and drifts at
    0.999 per step, the first training batch sets the range, so a short fine-tune
    from a float model does not keep a stale range.
    """

    def __init__(self, ema_decay: float = 0.99):
        self.ema_decay = float(ema_decay)

    def build(self, tensor_shape, name, layer):
        # tfmot names every post-activation range 'post_activation'; the RBF has three,
        # and HDF5 saving needs unique weight names.
        existing = {w.name.split("/")[-1].split(":")[0] for w in layer.weights}
        base, k = name, 1
        while f"{name}_min" in existing:
            k += 1
            name = f"{base}_{k}"

        def var(suffix, value, dtype=tf.float32):
            return layer.add_weight(f"{name}_{suffix}", shape=(), dtype=dtype, trainable=False,
                                    initializer=keras.initializers.Constant(value))
        return {"min_var": var("min", -1.0), "max_var": var("max", 1.0), "seen": var("seen", 0.0)}

    def __call__(self, inputs, training, weights, **kwargs):
        lo_var, hi_var, seen = weights["min_var"], weights["max_var"], weights["seen"]
        if training:
            # The range must contain 0 so that zero is exactly representable.
            lo = tf.minimum(tf.reduce_min(inputs), 0.0)
            hi = tf.maximum(tf.reduce_max(inputs), 0.0)
            first = tf.equal(seen, 0.0)
            decay = tf.where(first, 0.0, self.ema_decay)
            lo = lo_var.assign(decay * lo_var + (1.0 - decay) * lo)
            hi = hi_var.assign(decay * hi_var + (1.0 - decay) * hi)
            seen.assign(1.0)
        else:
            lo, hi = tf.identity(lo_var), tf.identity(hi_var)
        return tf.quantization.fake_quant_with_min_max_vars(inputs, lo, hi, num_bits=8, narrow_range=False)

    def get_config(self):
        return {"ema_decay": self.ema_decay}

    def __eq__(self, other):
        return isinstance(other, RangeQuantizer) and self.ema_decay == other.ema_decay

    def __ne__(self, other):
        return not self.__eq__(other)


@keras.utils.register_keras_serializable(package="lenet_edge")
class FixedRangeQuantizer(Quantizer):
    """Fake-quantization to a fixed range (TANH's int8 output range)."""

    def __init__(self, min_value: float, max_value: float):
        self.min_value, self.max_value = float(min_value), float(max_value)

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        return tf.quantization.fake_quant_with_min_max_args(
            inputs, min=self.min_value, max=self.max_value, num_bits=8, narrow_range=False)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value}

    def __eq__(self, other):
        return isinstance(other, FixedRangeQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


@keras.utils.register_keras_serializable(package="lenet_edge")
class SquashedQuantizeConfig(QuantizeConfig):
    """C1, S2, C3, S4, C5 (per-channel kernel) and F6 (per-tensor kernel)."""

    def __init__(self, per_channel: bool = True):
        self.per_channel = bool(per_channel)

    def get_weights_and_quantizers(self, layer):
        return [(layer._kernel_variable(), EffectiveKernelQuantizer(self.per_channel))]

    def get_activations_and_quantizers(self, layer):
        # tanh is a "pre-quantize" activation in tfmot: this fake-quantizes its input.
        return [(layer.activation, RangeQuantizer())]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.quantized_kernel = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return [FixedRangeQuantizer(TANH_OUTPUT_MIN, TANH_OUTPUT_MAX)]

    def get_config(self):
        return {"per_channel": self.per_channel}


@keras.utils.register_keras_serializable(package="lenet_edge")
class RbfQuantizeConfig(QuantizeConfig):
    """Euclidean RBF: ranges for A·u, prototypes, squared differences and the output."""

    def get_weights_and_quantizers(self, layer):
        return []  # the prototypes must stay fixed; they are quantized through prototype_hook

    def get_activations_and_quantizers(self, layer):
        return [(layer.input_hook, RangeQuantizer()), (layer.prototype_hook, RangeQuantizer()),
                (layer.difference_hook, RangeQuantizer())]

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        layer.input_hook, layer.prototype_hook, layer.difference_hook = quantize_activations

    def get_output_quantizers(self, layer):
        return [RangeQuantizer()]

    def get_config(self):
        return {}


def _config_for(layer):
    # Per-channel kernels where TFLite convolutions take them; FULLY_CONNECTED (C5, F6)
    # and the depthwise S2/S4 (one coefficient per map anyway) are per tensor.
    if isinstance(layer, SquashedConv2D) and not layer.is_full_connection:
        return SquashedQuantizeConfig(per_channel=True)
    if isinstance(layer, (SquashedConv2D, Subsampling, SquashedDense)):
        return SquashedQuantizeConfig(per_channel=False)
    if isinstance(layer, EuclideanRBF):
        return RbfQuantizeConfig()
    return None


CUSTOM_OBJECTS = {
    cls.__name__: cls for cls in (
        SquashedConv2D, Subsampling, SquashedDense, EuclideanRBF, MapLoss, ArgminAccuracy,
        EffectiveKernelQuantizer, RangeQuantizer, FixedRangeQuantizer,
        SquashedQuantizeConfig, RbfQuantizeConfig)
}


@contextlib.contextmanager
def quantize_scope():
    """tfmot's quantize_scope with every lenet_edge layer and config registered."""
    with tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS):
        yield


def quantize_model(model: keras.Model) -> keras.Model:
    """Returns the QAT version of a (trained) float LeNet-5, with its weights."""
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def annotate_layer(layer):
        config = _config_for(layer)
        return annotate(layer, quantize_config=config) if config is not None else layer

    annotated = keras.models.clone_model(model, clone_function=annotate_layer)
    annotated.set_weights(model.get_weights())
    annotated = tfmot.quantization.keras.quantize_annotate_model(annotated)
    with quantize_scope():
        return tfmot.quantization.keras.quantize_apply(annotated)


def load_qat_model(path) -> keras.Model:
    """Loads a saved QAT model (all custom layers, quantizers and configs registered)."""
    with quantize_scope():
        return keras.models.load_model(path, compile=False)

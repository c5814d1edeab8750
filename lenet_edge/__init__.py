"""lenet_edge: the original LeNet-5, trained, quantized to int8 and verified for microcontrollers.

tensorflow-model-optimization only works with Keras 2, so the legacy Keras
(`tf_keras`) must be selected *before* TensorFlow is first imported. Importing
this package does that; every module imports Keras as `import tf_keras as keras`.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if os.environ["TF_USE_LEGACY_KERAS"] != "1":  # pragma: no cover - user override
    raise RuntimeError(
        "TF_USE_LEGACY_KERAS is set to %r; lenet_edge needs it to be 1 (tfmot requires Keras 2). "
        "Unset it or set TF_USE_LEGACY_KERAS=1." % os.environ["TF_USE_LEGACY_KERAS"])
# TensorFlow's C++ logging is noise for users of a CLI; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

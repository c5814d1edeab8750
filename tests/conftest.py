"""Shared fixtures. The real MNIST comes through the same fetch as `make train` (cached)."""
import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def mnist():
    from lenet_edge.data import load_mnist
    return load_mnist(verbose=False)


@pytest.fixture(scope="session")
def converted(mnist, tmp_path_factory):
    """A briefly trained model, fine-tuned quantization-aware and converted (not the committed one)."""
    import tf_keras as keras

    from lenet_edge import export, training
    from lenet_edge.config import Config
    from lenet_edge.model import MapLoss, build_lenet5
    from lenet_edge.quantization import quantize_model
    run = tmp_path_factory.mktemp("run")
    config = Config(train_subset=3000, epochs=1, learning_rate=3e-3, schedule="constant", run_dir=str(run))
    training.set_determinism(0)
    model = build_lenet5(0)
    training.fit_float(model, mnist.x_train[:3000], mnist.y_train[:3000], mnist.x_val[:200], mnist.y_val[:200],
                       config, run, verbose=0)
    qat = quantize_model(model)
    qat.compile(keras.optimizers.Adam(1e-4), MapLoss())
    qat.fit(mnist.x_train[:1000], mnist.y_train[:1000], batch_size=32, epochs=1, verbose=0)
    int8 = export.to_int8_tflite(qat, mnist.x_train[:100])
    return {"model": model, "qat": qat, "int8": int8, "float": export.to_float_tflite(model), "run": run}

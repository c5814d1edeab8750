"""The faithful LeNet-5 against independent references: the paper's counts, Table I, NumPy formulas."""
import numpy as np
import pytest

import lenet_edge  # noqa: F401
import tensorflow as tf

from lenet_edge.layers import A, C3_TABLE, S, rbf_prototypes, render_prototypes, squash
from lenet_edge.model import MapLoss, build_lenet5, map_loss_per_sample, parameter_counts

# Table I of the paper, typed in from FACTS.md as C3 map -> S2 maps (independent of C3_TABLE_ROWS).
TABLE_I = {0: (0, 1, 2), 1: (1, 2, 3), 2: (2, 3, 4), 3: (3, 4, 5), 4: (0, 4, 5), 5: (0, 1, 5),
           6: (0, 1, 2, 3), 7: (1, 2, 3, 4), 8: (2, 3, 4, 5), 9: (0, 3, 4, 5), 10: (0, 1, 4, 5),
           11: (0, 1, 2, 5), 12: (0, 1, 3, 4), 13: (1, 2, 4, 5), 14: (0, 2, 3, 5), 15: (0, 1, 2, 3, 4, 5)}


@pytest.fixture(scope="module")
def model():
    return build_lenet5(seed=3)


def test_per_layer_parameter_counts_match_the_paper(model):
    counts = parameter_counts(model)
    assert counts == {"C1": (156, 0), "S2": (12, 0), "C3": (1516, 0), "S4": (32, 0),
                      "C5": (48120, 0), "F6": (10164, 0), "RBF": (0, 840)}
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 60000


def test_c3_connectivity_by_gradients(model):
    c3 = model.get_layer("C3")
    x = tf.Variable(tf.random.stateless_normal((1, 14, 14, 6), seed=[1, 2]))
    for k in range(16):
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(c3(x)[..., k])
        grad = tape.gradient(out, x).numpy()
        for i in range(6):
            connected = i in TABLE_I[k]
            assert (np.abs(grad[..., i]).max() > 0) == connected, (k, i)


def test_c3_unconnected_weights_are_zero_and_stay_zero_after_training(model):
    kernel = model.get_layer("C3").effective_kernel().numpy()  # (5, 5, 6, 16)
    mask = np.zeros((6, 16), bool)
    for k, maps in TABLE_I.items():
        mask[list(maps), k] = True
    np.testing.assert_array_equal(mask, C3_TABLE)
    assert np.all(kernel[:, :, ~mask] == 0)
    m = build_lenet5(seed=1)
    m.compile("adam", MapLoss())
    x = np.random.default_rng(0).uniform(-0.1, 1.175, (64, 32, 32, 1)).astype(np.float32)
    m.fit(x, np.arange(64) % 10, epochs=2, batch_size=16, verbose=0)
    trained = m.get_layer("C3").effective_kernel().numpy()
    assert np.all(trained[:, :, ~mask] == 0)
    assert np.all(np.abs(trained[:, :, mask]).sum(axis=(0, 1)) > 0)


def test_squash_constants():
    assert A == 1.7159 and S == pytest.approx(2 / 3)
    f = squash(tf.constant([1.0, -1.0, 0.0])).numpy()
    np.testing.assert_allclose(f, [1.0, -1.0, 0.0], atol=2e-4)


def test_rbf_equals_numpy_squared_distance(model):
    rbf = model.get_layer("RBF")
    u = np.random.default_rng(0).uniform(-1, 1, (5, 84)).astype(np.float32)
    got = rbf(u).numpy()
    w = rbf_prototypes()
    x = A * u
    want = ((x[:, None, :] - w[None]) ** 2).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_array_equal(rbf.prototypes.numpy(), w)
    assert not rbf.trainable_weights


def test_prototypes_are_distinct_pm1_digit_bitmaps():
    w = rbf_prototypes()
    assert w.shape == (10, 84) and set(np.unique(w)) == {-1.0, 1.0}
    hamming = (w[:, None, :] != w[None]).sum(-1)
    assert hamming[~np.eye(10, dtype=bool)].min() >= 10
    text = render_prototypes()
    assert len(text.splitlines()) == 13


def test_map_loss_matches_numpy_formula_and_is_stable():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 400, (8, 10)).astype(np.float32)
    y[0] = [1000.0] * 10  # all far: exp(-y) underflows, log-sum-exp must not
    labels = rng.integers(0, 10, 8)
    j = 0.1
    got = map_loss_per_sample(labels, y, j).numpy()
    yd = y.astype(np.float64)
    m = np.maximum(-j, (-yd).max(1))
    want = yd[np.arange(8), labels] + m + np.log(np.exp(-j - m) + np.exp(-yd - m[:, None]).sum(1))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.isfinite(got).all()
    assert MapLoss(j)(labels, y).numpy() == pytest.approx(want.mean(), rel=1e-6)
    with pytest.raises(ValueError, match="j must be positive"):
        MapLoss(0.0)


def test_initial_weights_are_uniform_within_paper_bounds(model):
    c1 = model.get_layer("C1").kernel.numpy()
    assert np.abs(c1).max() <= 2.4 / 25 and np.abs(c1).max() > 0.8 * 2.4 / 25
    c5 = model.get_layer("C5").kernel.numpy()
    assert np.abs(c5).max() <= 2.4 / 400
    c3 = model.get_layer("C3").effective_kernel().numpy() / (S * A)
    for k, maps in TABLE_I.items():
        assert np.abs(c3[..., k]).max() <= 2.4 / (25 * len(maps)) + 1e-7


def test_saved_model_reloads_without_custom_objects(model, tmp_path):
    import tf_keras as keras
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path, compile=False)
    x = np.random.default_rng(0).uniform(-0.1, 1.175, (3, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), rtol=1e-6)

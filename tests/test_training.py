"""Training: config validation, a short real training run, deterministic resume, NaN handling."""
import dataclasses
import json

import numpy as np
import pytest

import lenet_edge  # noqa: F401
import tensorflow as tf

from lenet_edge import training
from lenet_edge.config import Config, load_config
from lenet_edge.model import build_lenet5
from lenet_edge.train import main as train_main


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 3, "learning_rate": 1}))
    config = load_config(path, {"batch_size": 8, "epochs": None})
    assert config.epochs == 3 and config.learning_rate == 1.0 and config.batch_size == 8


@pytest.mark.parametrize("overrides, message", [
    ({"optimizer": "rmsprop"}, "optimizer='rmsprop'.*adam or sgd"),
    ({"epochs": 0}, "epochs=0"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"map_j": -1.0}, "map_j"),
    ({"bogus": 1}, "unknown config field"),
    ({"epochs": "ten"}, "epochs='ten'.*int"),
])
def test_invalid_config_is_refused_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_cli_rejects_bad_flags_before_any_work(tmp_path, capsys):
    assert train_main(["--schedule", "weird", "--run-dir", str(tmp_path / "r")]) == 2
    assert "schedule='weird'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_paper_schedule():
    c = Config(schedule="paper", learning_rate=5e-4)
    assert [c.learning_rate_at(e) for e in range(14)] == [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 2


def test_distortions_are_seeded_and_keep_digits_inside():
    x = np.full((4, 32, 32, 1), -0.1, np.float32)
    x[:, 10:22, 12:20] = 1.175
    a = training.random_affine(tf.constant(x), tf.constant([1, 2])).numpy()
    b = training.random_affine(tf.constant(x), tf.constant([1, 2])).numpy()
    c = training.random_affine(tf.constant(x), tf.constant([1, 3])).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a - x).max() > 0.1
    assert a.min() >= -0.1 - 1e-6 and a.max() <= 1.175 + 1e-6
    np.testing.assert_allclose(a[:, 0, :, 0], -0.1, atol=1e-6)  # borders stay background


def _small(tmp_path, **kw):
    return Config(train_subset=2000, validation_size=1000, epochs=2, batch_size=32,
                  run_dir=str(tmp_path / "run"), export_dir="", **kw)


def test_short_training_on_a_subset_learns(mnist, tmp_path):
    config = dataclasses.replace(_small(tmp_path), train_subset=5000, epochs=3, learning_rate=3e-3,
                                 schedule="constant")
    training.set_determinism(0)
    model = build_lenet5(0)
    state = training.fit_float(model, mnist.x_train[:5000], mnist.y_train[:5000],
                               mnist.x_val[:1000], mnist.y_val[:1000], config, tmp_path / "run", verbose=0)
    # 3 epochs on 5,000 images: stated bar 92% accuracy on 2,000 test images (chance is 10%).
    assert training.error_rate(model, mnist.x_test[:2000], mnist.y_test[:2000]) < 8.0
    assert [r["epoch"] for r in state["history"]] == [1, 2, 3]


def test_resume_after_interruption_equals_uninterrupted_run(mnist, tmp_path, monkeypatch):
    x, y = mnist.x_train[:600], mnist.y_train[:600]
    xv, yv = mnist.x_val[:200], mnist.y_val[:200]

    def run(run_dir, interrupt_at=None, resume=False):
        config = dataclasses.replace(_small(tmp_path, distort=True), epochs=3, run_dir=str(run_dir))
        training.set_determinism(0)
        model = build_lenet5(0)
        real = training.epoch_dataset

        def maybe_interrupt(x_, y_, c, epoch):
            if epoch == interrupt_at:
                raise KeyboardInterrupt
            return real(x_, y_, c, epoch)

        monkeypatch.setattr(training, "epoch_dataset", maybe_interrupt)
        try:
            training.fit_float(model, x, y, xv, yv, config, run_dir, resume=resume, verbose=0)
        finally:
            monkeypatch.setattr(training, "epoch_dataset", real)
        return model

    straight = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", interrupt_at=2)
    assert (tmp_path / "b" / "checkpoints" / "latest").read_text().strip() == "epoch-002"
    resumed = run(tmp_path / "b", resume=True)
    for w1, w2 in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(w1, w2)


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(mnist, tmp_path):
    config = dataclasses.replace(_small(tmp_path), epochs=2)
    x = mnist.x_train[:256].copy()
    training.set_determinism(0)
    model = build_lenet5(0)
    real = training.epoch_dataset

    def poisoned(x_, y_, c, epoch):
        if epoch == 1:
            x_ = x_.copy()
            x_[:] = np.nan
        return real(x_, y_, c, epoch)

    training.epoch_dataset = poisoned
    try:
        with pytest.raises(training.TrainingDiverged, match="NaN|nan.*last good checkpoint"):
            training.fit_float(model, x, mnist.y_train[:256], mnist.x_val[:100], mnist.y_val[:100],
                               config, tmp_path / "run", verbose=0)
    finally:
        training.epoch_dataset = real
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "epoch-001"

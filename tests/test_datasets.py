"""CIFAR-10 batches (safe unpickling, download, extraction) and IDX files, on small files the tests write."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from toolkit.errors import ToolkitError
from training import datasets
from training.data import load_dataset

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar_folder(root: Path, per_batch: int = 3, seed: int = 0) -> Path:
    """A miniature cifar-10-batches-py folder; batches use every pickle protocol a real one might."""
    folder = root / datasets.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    meta = {b"label_names": [name.encode() for name in CLASSES], b"num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    for name, protocol in zip(datasets.CIFAR10_TRAIN_BATCHES + ("test_batch",), (2, 3, 4, 5, 2, 4)):
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(value) for value in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{index}.png".encode() for index in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return folder


def test_cifar_folder_loads_train_and_test_with_rgb_layout(tmp_path: Path) -> None:
    folder = write_cifar_folder(tmp_path)
    train = datasets.load_cifar10(folder)
    assert train.images.shape == (15, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.class_names == CLASSES
    first = datasets.read_cifar_pickle(folder / "data_batch_1")
    # Each row is 1024 red, 1024 green, 1024 blue values.
    assert list(train.images[0, 0, 1]) == [first["data"][0, 1], first["data"][0, 1025], first["data"][0, 2049]]
    assert list(train.labels[:3]) == first["labels"]
    test = load_dataset(f"{tmp_path}:test")  # the parent folder and the :test suffix are both understood
    assert len(test) == 3
    assert len(load_dataset(str(folder), limit=10)) == 10


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    folder = write_cifar_folder(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": _RunsCommand(f"touch {marker}")}, protocol=2))
    with pytest.raises(ToolkitError, match=r"refusing to load .*data_batch_2.*(posix|os)\.system"):
        datasets.load_cifar10(folder)
    assert not marker.exists()
    # The same gadget through builtins.eval, in a newer protocol.
    payload = pickle.dumps(_Eval(f"open({str(marker)!r}, 'w')"), protocol=4)
    (folder / "batches.meta").write_bytes(payload)
    with pytest.raises(ToolkitError, match="builtins.eval"):
        datasets.load_cifar10(folder)
    assert not marker.exists()


class _Eval:
    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self):
        return (eval, (self.source,))


def test_garbage_batch_is_a_clear_error(tmp_path: Path) -> None:
    folder = write_cifar_folder(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02}q\x00(")  # truncated pickle
    with pytest.raises(ToolkitError, match="data_batch_3 is not a readable CIFAR-10 batch"):
        datasets.load_cifar10(folder)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ToolkitError, match="N x 3072"):
        datasets.load_cifar10(folder)


def _tarball(source: Path, target: Path, extra: tarfile.TarInfo | None = None) -> str:
    with tarfile.open(target, "w:gz") as tar:
        tar.add(source, arcname=datasets.CIFAR10_FOLDER)
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size) if extra.isfile() else None)
    return hashlib.md5(target.read_bytes()).hexdigest()


@pytest.fixture()
def http_folder(tmp_path: Path):
    """Serve tmp_path/www on 127.0.0.1; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_verifies_md5_then_extracts_into_the_cache(tmp_path: Path, http_folder, monkeypatch) -> None:
    www, base_url = http_folder
    monkeypatch.chdir(tmp_path)  # no ./cifar-10-batches-py here
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    md5 = _tarball(write_cifar_folder(tmp_path / "source"), www / "cifar.tar.gz")
    cache = datasets.keras_cache_dir()
    assert cache == tmp_path / "keras" / "datasets"

    with pytest.raises(ToolkitError, match="MD5"):
        datasets.find_cifar10(url=f"{base_url}/cifar.tar.gz", md5="0" * 32)
    assert not any(cache.iterdir()), "a download with the wrong checksum must leave nothing behind"
    with pytest.raises(ToolkitError, match="cannot download"):
        datasets.find_cifar10(url=f"{base_url}/missing.tar.gz", md5=md5)

    folder = datasets.find_cifar10(url=f"{base_url}/cifar.tar.gz", md5=md5)
    assert folder == cache / datasets.CIFAR10_FOLDER
    assert (cache / datasets.CIFAR10_ARCHIVE).is_file()
    assert {path.name for path in cache.iterdir()} == {datasets.CIFAR10_ARCHIVE, datasets.CIFAR10_FOLDER}
    # Found in the cache from now on, with no network at all.
    assert datasets.find_cifar10(url="http://127.0.0.1:9/unreachable", md5=md5) == folder
    assert len(datasets.load_cifar10(download=False)) == 15


def test_file_url_and_unsafe_archive_members(tmp_path: Path) -> None:
    source = write_cifar_folder(tmp_path / "source")
    archive = tmp_path / "good.tar.gz"
    md5 = _tarball(source, archive)
    folder = datasets.find_cifar10(url=archive.as_uri(), md5=md5, cache_dir=tmp_path / "cache")
    assert datasets.is_cifar10_folder(folder)

    escape = tarfile.TarInfo("../escaped.txt")
    escape.size = 3
    link = tarfile.TarInfo(f"{datasets.CIFAR10_FOLDER}/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    for index, member in enumerate((escape, link)):
        bad = tmp_path / f"bad{index}.tar.gz"
        _tarball(source, bad, member)
        destination = tmp_path / f"extract{index}"
        destination.mkdir()
        with pytest.raises(ToolkitError, match="refusing to extract"):
            datasets.extract_cifar10(bad, destination)
        assert not (tmp_path / "escaped.txt").exists() and not any(destination.iterdir())


def write_idx(path: Path, array: np.ndarray, type_byte: int = 0x08, compress: bool = False) -> Path:
    header = bytes([0, 0, type_byte, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def test_idx_files_plain_and_gzip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 4, 5), dtype=np.uint8)
    labels = np.array([0, 1, 2, 9, 9, 3], np.uint8)
    folder = tmp_path / "fashion"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", images, compress=True)
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    np.testing.assert_array_equal(datasets.read_idx(folder / "train-images-idx3-ubyte.gz"), images)
    wide = write_idx(tmp_path / "wide.idx", np.arange(-3, 3, dtype=np.int32).reshape(2, 3), type_byte=0x0C)
    np.testing.assert_array_equal(datasets.read_idx(wide), np.arange(-3, 3).reshape(2, 3))

    dataset = load_dataset(str(folder))
    assert dataset.images.shape == (6, 4, 5, 1)
    assert dataset.class_names == datasets.FASHION_MNIST_LABELS  # "fashion" in the path
    np.testing.assert_array_equal(dataset.labels, labels)


def test_idx_validation(tmp_path: Path) -> None:
    bad_magic = tmp_path / "bad"
    bad_magic.write_bytes(b"\x00\x01\x08\x01" + b"\x00" * 8)
    with pytest.raises(ToolkitError, match="bad magic number 00010801"):
        datasets.read_idx(bad_magic)
    truncated = write_idx(tmp_path / "short", np.zeros((3, 2, 2), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-1])
    with pytest.raises(ToolkitError, match=r"needs 12"):
        datasets.read_idx(truncated)
    folder = tmp_path / "digits"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ToolkitError, match="4,.*labels for 3 images"):
        datasets.load_idx_dataset(folder)
    with pytest.raises(ToolkitError, match="no t10k-images"):
        datasets.load_idx_dataset(folder, "test")
    with pytest.raises(ToolkitError, match="the splits train and test, not 'validation'"):
        datasets.load_idx_dataset(folder, "validation")


@pytest.mark.skipif(not datasets.FASHION_MNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_test_split() -> None:
    dataset = load_dataset("fashion-mnist:test")
    assert dataset.images.shape == (10000, 28, 28, 1)
    assert list(dataset.labels[:4]) == [9, 2, 1, 1]  # ankle boot, pullover, trouser, trouser
    assert np.bincount(dataset.labels).tolist() == [1000] * 10


def test_cifar_that_keras_3_downloaded_is_found(tmp_path: Path, monkeypatch) -> None:
    """Keras 3's cifar10.load_data() extracts into cifar-10-batches-py-target/: no second download."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cache = datasets.keras_cache_dir()
    folder = write_cifar_folder(cache / f"{datasets.CIFAR10_FOLDER}-target")
    assert datasets.find_cifar10(url="http://127.0.0.1:9/unreachable") == folder

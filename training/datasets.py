"""The in-memory :class:`Dataset`, and CIFAR-10 (pickled batches) and Fashion-MNIST (IDX files) as such objects.

CIFAR-10 comes from a folder, the Keras cache or a checked download; its pickles are read with an
unpickler that can build only lists, dicts and numpy arrays, so a crafted file cannot run code.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from toolkit import atomic
from toolkit.errors import ToolkitError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
CIFAR10_TEST_BATCHES = ("test_batch",)
CIFAR10_URL_VARIABLE = "TOOLKIT_CIFAR10_URL"  # overrides CIFAR10_URL (a mirror, or file:// for air-gapped machines)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclasses.dataclass
class Dataset:
    """Images and labels held in memory."""

    images: np.ndarray  # uint8, N x H x W x C, RGB (C=3) or grey (C=1)
    labels: np.ndarray  # int64, N, index into class_names
    class_names: list[str]  # label names, index = class id
    source: str = ""  # human-readable origin, recorded in model cards

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> "Dataset":
        """The examples at ``indices``, in that order."""
        return Dataset(self.images[indices], self.labels[indices], self.class_names, self.source)


# --------------------------------------------------------------------------- CIFAR-10 pickles


class _CifarUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR-10 batch holds: dicts, lists, bytes, ints and numpy arrays.

    Containers and scalars are pickle opcodes and need no global; the globals below are
    the ones numpy's array pickling (any protocol, Python 2 or 3) refers to. Anything
    else, such as ``os.system`` or ``builtins.eval``, is refused before it is looked up.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 store bytes this way
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name}")
        return super().find_class(module, name)


def read_cifar_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Safely unpickle one CIFAR-10 file (a data batch or ``batches.meta``); keys come back as str."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            payload = _CifarUnpickler(handle, encoding="bytes").load()
    except pickle.UnpicklingError as error:
        raise ToolkitError(
            f"refusing to load {path}: it asks the unpickler for {error}, which a CIFAR-10 batch never needs "
            "(only lists and numpy arrays are allowed), so the file is not a genuine batch"
        ) from None
    except OSError as error:
        raise ToolkitError(f"cannot read {path}: {error.strerror or error}") from None
    except Exception as error:  # noqa: BLE001 - truncated or garbage files raise many kinds of error
        raise ToolkitError(f"{path} is not a readable CIFAR-10 batch ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict):
        raise ToolkitError(f"{path} is not a CIFAR-10 batch: it holds a {type(payload).__name__}, not a dict")
    return {key.decode("latin1") if isinstance(key, bytes) else str(key): value for key, value in payload.items()}


def _cifar_batch_arrays(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ToolkitError(f"{path.parent} is missing {path.name}")
    batch = read_cifar_pickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ToolkitError(f"{path} is not a CIFAR-10 batch: 'data' must be a uint8 array of N x 3072 pixels")
    labels_array = np.asarray(labels, dtype=np.int64) if isinstance(labels, (list, np.ndarray)) else None
    if labels_array is None or labels_array.shape != (data.shape[0],):
        raise ToolkitError(f"{path} is not a CIFAR-10 batch: 'labels' must list one label per image")
    if labels_array.size and (labels_array.min() < 0 or labels_array.max() >= num_classes):
        raise ToolkitError(f"{path}: labels must lie in 0..{num_classes - 1}")
    # Rows hold 1024 red, then 1024 green, then 1024 blue values, each plane row-major.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels_array


def is_cifar10_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` looks like an extracted ``cifar-10-batches-py`` folder."""
    path = Path(path)
    return (path / "batches.meta").is_file() and (path / CIFAR10_TRAIN_BATCHES[0]).is_file()


def keras_cache_dir() -> Path:
    """Keras's dataset cache: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "datasets"


def find_cifar10(path: str | os.PathLike | None = None, download: bool = True, url: str | None = None, md5: str = CIFAR10_MD5,
                 cache_dir: str | os.PathLike | None = None) -> Path:
    """The ``cifar-10-batches-py`` folder to read, downloading it into the Keras cache if needed."""
    if path is not None:
        path = Path(path).expanduser()
        for candidate in (path, path / CIFAR10_FOLDER):
            if is_cifar10_folder(candidate):
                return candidate
        raise ToolkitError(f"{path} is not a {CIFAR10_FOLDER} folder (it needs batches.meta and data_batch_1..5)")
    cache = Path(cache_dir) if cache_dir is not None else keras_cache_dir()
    # Keras 3's cifar10.load_data() extracts into cifar-10-batches-py-target/cifar-10-batches-py.
    for candidate in (Path.cwd() / CIFAR10_FOLDER, cache / CIFAR10_FOLDER, cache / f"{CIFAR10_FOLDER}-target" / CIFAR10_FOLDER):
        if is_cifar10_folder(candidate):
            return candidate
    archive = cache / CIFAR10_ARCHIVE
    if archive.is_file() and atomic.file_digest(archive, "md5") == md5:
        return extract_cifar10(archive, cache)
    if not download:
        raise ToolkitError(f"CIFAR-10 not found in ./{CIFAR10_FOLDER} or {cache / CIFAR10_FOLDER}, and downloading is off")
    download_file(url or os.environ.get(CIFAR10_URL_VARIABLE) or CIFAR10_URL, archive, md5)
    return extract_cifar10(archive, cache)


def download_file(url: str, target: str | os.PathLike, md5: str) -> Path:
    """Download ``url`` to ``target`` atomically, checking its MD5; a failure leaves no partial file."""
    from tqdm.auto import tqdm

    target = Path(target)
    hint = f"place an extracted {CIFAR10_FOLDER} folder in {target.parent} or pass --data PATH"
    try:
        response = urllib.request.urlopen(url, timeout=60.0)  # noqa: S310 - https, file:// and mirrors
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise ToolkitError(f"cannot download {url} ({reason}): no internet? {hint}") from None
    digest = hashlib.md5()
    with response, atomic.atomic_path(target) as temporary:
        total = int(response.headers.get("Content-Length") or 0) or None
        with open(temporary, "wb") as handle, tqdm(
            total=total, unit="B", unit_scale=True, desc=f"downloading {target.name}", disable=None
        ) as bar:
            try:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    handle.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            except OSError as error:
                raise ToolkitError(f"download of {url} broke off ({error}): {hint}") from None
        if digest.hexdigest() != md5:
            raise ToolkitError(
                f"download of {url} has MD5 {digest.hexdigest()}, expected {md5}: the file is corrupt or not the "
                "CIFAR-10 archive; nothing was saved"
            )
    return target


def extract_cifar10(archive: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Extract the CIFAR-10 archive into ``destination``, refusing links, devices and paths that escape it."""
    archive, destination = Path(archive), Path(destination)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                parts = PurePosixPath(member.name).parts
                escapes = not parts or member.name.startswith(("/", "\\")) or ".." in parts or parts[0] != CIFAR10_FOLDER
                if escapes or not (member.isfile() or member.isdir()):
                    raise ToolkitError(
                        f"refusing to extract {archive}: member {member.name!r} is not a plain file under {CIFAR10_FOLDER}/"
                    )
            with tempfile.TemporaryDirectory(prefix=".cifar10-extract-", dir=destination, ignore_cleanup_errors=True) as staging:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(staging, members=members, filter="data")
                else:  # Python < 3.11.4: the checks above already rule out every unsafe member
                    tar.extractall(staging, members=members)
                extracted = Path(staging) / CIFAR10_FOLDER
                if not is_cifar10_folder(extracted):
                    raise ToolkitError(f"{archive} does not hold {CIFAR10_FOLDER}/batches.meta and data batches")
                final = destination / CIFAR10_FOLDER
                if not is_cifar10_folder(final):
                    if final.exists():
                        shutil.rmtree(final)
                    os.replace(extracted, final)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ToolkitError(f"cannot extract {archive}: {error}") from None
    return destination / CIFAR10_FOLDER


def load_cifar10(path: str | os.PathLike | None = None, split: str = "train", download: bool = True) -> Dataset:
    """CIFAR-10 as a :class:`Dataset` (RGB uint8, 32x32x3): ``train`` (data_batch_1..5) or ``test``."""
    batch_names = {"train": CIFAR10_TRAIN_BATCHES, "test": CIFAR10_TEST_BATCHES}[split]  # the spec's parser allows only these
    folder = find_cifar10(path, download=download)
    meta = read_cifar_pickle(folder / "batches.meta")
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise ToolkitError(f"{folder / 'batches.meta'} has no label_names list")
    class_names = [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names]
    images, labels = zip(*(_cifar_batch_arrays(folder / name, len(class_names)) for name in batch_names))
    return Dataset(np.concatenate(images), np.concatenate(labels), class_names, f"cifar10:{split} ({folder})")


# --------------------------------------------------------------------------- IDX (Fashion-MNIST)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into a native-endian numpy array, validating its header."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise ToolkitError(f"cannot read IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ToolkitError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ToolkitError(f"{path} is truncated: its header names {ndim} dimensions")
    shape = tuple(int(value) for value in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_size != expected:
        raise ToolkitError(f"{path} holds {len(raw) - header_size} bytes of data, but its header {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))


IDX_PREFIXES = {"train": "train", "test": "t10k"}  # split -> the file-name prefix MNIST-style folders use


def _find_idx(folder: Path, split: str, kind: str) -> Path:
    if split not in IDX_PREFIXES:
        raise ToolkitError(f"an IDX folder holds the splits {' and '.join(IDX_PREFIXES)}, not {split!r}")
    prefix = IDX_PREFIXES[split]
    dims = 3 if kind == "images" else 1
    pattern = re.compile(rf"^{prefix}-{kind}[-.]idx{dims}-ubyte(\.gz)?$")
    matches = sorted(path for path in folder.iterdir() if pattern.match(path.name))
    if not matches:
        raise ToolkitError(f"{folder} has no {prefix}-{kind}-idx{dims}-ubyte[.gz] file")
    return matches[0]


def is_idx_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` holds ``train-images-idx3-ubyte`` style files (MNIST, Fashion-MNIST)."""
    path = Path(path)
    return path.is_dir() and any(re.match(r"^(train|t10k)-images[-.]idx3-ubyte", item.name) for item in path.iterdir())


def load_idx_dataset(folder: str | os.PathLike, split: str = "train", class_names: list[str] | None = None) -> Dataset:
    """An MNIST-style IDX folder as a grey :class:`Dataset` (N x H x W x 1 uint8)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ToolkitError(f"IDX folder {folder} does not exist")
    images_path, labels_path = _find_idx(folder, split, "images"), _find_idx(folder, split, "labels")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ToolkitError(f"{images_path} must hold uint8 images N x H x W, got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ToolkitError(f"{labels_path} holds {labels.shape} labels for {images.shape[0]} images in {images_path}")
    labels = labels.astype(np.int64)
    if class_names is None:
        class_names = [str(index) for index in range(int(labels.max()) + 1)]
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ToolkitError(f"{labels_path}: labels must lie in 0..{len(class_names) - 1}")
    return Dataset(np.ascontiguousarray(images[..., None]), labels, list(class_names), f"idx:{split} ({folder})")


def load_fashion_mnist(split: str = "train") -> Dataset:
    """Fashion-MNIST (28x28x1 grey uint8) from the IDX files of the Debian package."""
    folder = FASHION_MNIST_DIR
    if not folder.is_dir():
        raise ToolkitError(
            f"Fashion-MNIST folder {folder} does not exist: apt-get install dataset-fashion-mnist, "
            "or pass --data PATH to a folder with the IDX files"
        )
    return dataclasses.replace(load_idx_dataset(folder, split, FASHION_MNIST_LABELS), source=f"fashion-mnist:{split} ({folder})")

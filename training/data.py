"""Loading a dataset spec (CIFAR-10, Fashion-MNIST or an image folder) into one in-memory :class:`Dataset`.

Training, calibration, evaluation and benchmarks share this loader. Image folders are decoded
with OpenCV (no TensorFlow); the CIFAR-10 and IDX readers and :class:`Dataset` live in ``training.datasets``.
"""

from __future__ import annotations

import collections
import os
import re
import warnings
from pathlib import Path

import numpy as np

from toolkit import preprocessing
from toolkit.errors import ToolkitError, ToolkitWarning
from toolkit.preprocessing import IMAGE_SUFFIXES
from training import datasets
from training.datasets import Dataset

MAX_BAD_FRACTION = 0.01  # more unreadable or non-image files than this is an error, not a warning
_IGNORED_NAMES = ("thumbs.db", "desktop.ini")  # operating-system clutter, skipped silently


def _parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``cifar10:test`` into (``cifar10``, ``test``); a path that exists as written is never split."""
    match = re.match(r"^(.+):(train|test)$", spec)
    if match and not Path(spec).exists():
        return match.group(1), match.group(2)
    return spec, None


# The datasets --data takes by name, and the spellings of each name.
NAMED_DATASETS = {"cifar10": ("cifar10", "cifar-10"), "fashion-mnist": ("fashion-mnist", "fashion_mnist", "fashionmnist")}


def named_dataset(spec: str) -> str | None:
    """``cifar10`` or ``fashion-mnist`` when ``spec`` names one (any spelling, ``:test`` or not), else None."""
    name = _parse_spec(spec)[0].lower()
    return next((key for key, spellings in NAMED_DATASETS.items() if name in spellings), None)


def absolute_spec(spec: str) -> str:
    """``spec`` with its folder made absolute (``data/x:test`` -> ``/home/.../data/x:test``); names stay names."""
    name, split = _parse_spec(spec)
    if not Path(name).exists():
        return spec  # cifar10, fashion-mnist, or a path that is not there (loading says so)
    return str(Path(name).resolve()) + (f":{split}" if split else "")


def load_dataset(spec: str, limit: int | None = None, seed: int = 0, progress: bool | None = None) -> Dataset:
    """The dataset a spec names: ``cifar10``, ``fashion-mnist``, a ``cifar-10-batches-py`` or IDX folder (each with an
    optional ``:test``), or an image folder ``ROOT/<class>/<image>``; ``limit``: a seeded, class-balanced subset."""
    name, split = _parse_spec(spec)
    named = named_dataset(name)
    path = Path(name).expanduser()
    if named == "cifar10":
        dataset = datasets.load_cifar10(split=split or "train")
    elif named == "fashion-mnist":
        dataset = datasets.load_fashion_mnist(split=split or "train")
    elif datasets.is_cifar10_folder(path) or datasets.is_cifar10_folder(path / datasets.CIFAR10_FOLDER):
        dataset = datasets.load_cifar10(path, split=split or "train")
    elif datasets.is_idx_folder(path):
        names = datasets.FASHION_MNIST_LABELS if "fashion" in str(path).lower() else None
        dataset = datasets.load_idx_dataset(path, split or "train", names)
    elif split is not None:
        raise ToolkitError(f"{spec}: the :{split} suffix applies to cifar10, fashion-mnist and IDX folders only")
    else:
        return load_image_folder(path, limit=limit, seed=seed, progress=progress)
    if limit is not None and limit < len(dataset):
        dataset = dataset.subset(stratified_subset(dataset.labels, limit, seed))
    return dataset


def _list_class_files(root: Path) -> tuple[list[Path], list[list[Path]], list[Path]]:
    """Class folders, the image files in each, and the other (non-image) files found beside them."""
    if not root.exists():
        raise ToolkitError(f"data folder {root} does not exist (expected ROOT/<class>/<image>.jpg)")
    if not root.is_dir():
        raise ToolkitError(f"data path {root} is not a folder (expected ROOT/<class>/<image>.jpg)")
    # Sorted by name, not by Path: class ids (and so the validation split) are the same on every OS.
    class_dirs = sorted((path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")), key=lambda path: path.name)
    if not class_dirs:
        raise ToolkitError(f"data folder {root} has no class subfolders (expected ROOT/<class>/<image>.jpg)")
    if len(class_dirs) == 1:
        raise ToolkitError(
            f"data folder {root} has only one class ({class_dirs[0].name}): a classifier needs at least two class subfolders"
        )
    class_files: list[list[Path]] = []
    others: list[Path] = []
    for class_dir in class_dirs:
        images = []
        # Recursively, as torchvision's ImageFolder reads a class: images in subfolders belong to it too.
        for path in sorted(class_dir.rglob("*"), key=lambda path: path.relative_to(class_dir).parts):
            hidden = any(part.startswith(".") for part in path.relative_to(class_dir).parts)
            if hidden or path.name.lower() in _IGNORED_NAMES or path.is_dir():
                continue
            (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
        if not images:
            raise ToolkitError(
                f"class folder {class_dir} holds no images ({'/'.join(IMAGE_SUFFIXES)}): add images or remove the folder"
            )
        class_files.append(images)
    return class_dirs, class_files, others


def _decode(path: Path) -> tuple[np.ndarray | None, str]:
    """One image as grey HxW or BGR HxWx3 uint8 (alpha dropped), or None and the reason."""
    import cv2

    try:
        encoded = np.fromfile(path, dtype=np.uint8)  # handles non-ASCII paths, unlike cv2.imread on Windows
    except OSError as error:
        return None, f"unreadable: {error.strerror or error}"
    if encoded.size == 0:
        return None, "empty file"
    image = cv2.imdecode(encoded, cv2.IMREAD_ANYCOLOR)
    if image is None or image.size == 0:
        return None, "not a decodable image"
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return image, ""


def _decode_all(paths: list[Path], progress: bool | None) -> list[tuple[np.ndarray | None, str]]:
    """Decode ``paths`` in order on a few threads (OpenCV releases the GIL) with a progress bar."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    # Chunks, up to 256: a future per 32x32 image costs about a third as much again as decoding it; at least
    # four chunks a worker, so a few hundred large photos still decode on every thread.
    workers = max(1, min(8, os.cpu_count() or 1))
    size = max(1, min(256, -(-len(paths) // (4 * workers))))
    chunks = [paths[start : start + size] for start in range(0, len(paths), size)]
    results: list[tuple[np.ndarray | None, str]] = []
    with ThreadPoolExecutor(workers) as pool, tqdm(
        total=len(paths), desc="decoding images", unit="img", disable=None if progress is None else not progress
    ) as bar:
        for decoded in pool.map(lambda chunk: [_decode(path) for path in chunk], chunks):
            results += decoded
            bar.update(len(decoded))
    return results


def fit_images_to_size(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Every image of an N x H x W x C batch centre-cropped to the target's aspect ratio and resized to it."""
    if images.shape[1:3] == (height, width):
        return images
    if not len(images):
        return np.zeros((0, height, width, *images.shape[3:]), images.dtype)
    return np.stack([_fit_to_size(image, height, width) for image in images])


def _fit_to_size(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop ``image`` to the target's aspect ratio, then resize it (shared preprocessing)."""
    resized = preprocessing.resize(preprocessing.center_crop(image, height, width), height, width)
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8).reshape(height, width, *image.shape[2:])


def load_image_folder(root: Path | str, limit: int | None = None, seed: int = 0, progress: bool | None = None) -> Dataset:
    """An image folder ``root/<class>/<image>``; class ids follow sorted folder names.

    Images come back as RGB (grey and alpha images are converted), or as grey
    N x H x W x 1 when every image is grey. Images whose size differs from the most
    common one are centre-cropped and resized to it, with a warning. Files that are
    not readable images are skipped with a warning naming them; more than 1 % of such
    files is an error. ``limit`` decodes only a seeded, class-balanced subset.
    ``progress`` shows a progress bar (None: only on a terminal).
    """
    root = Path(root).expanduser()
    class_dirs, class_files, others = _list_class_files(root)
    paths = [path for files in class_files for path in files]
    labels = np.concatenate([np.full(len(files), index, np.int64) for index, files in enumerate(class_files)])
    if limit is not None and limit < len(paths):
        chosen = stratified_subset(labels, limit, seed)
        paths, labels = [paths[index] for index in chosen], labels[chosen]
    decoded = _decode_all(paths, progress)

    failed = [(path, reason) for path, (image, reason) in zip(paths, decoded) if image is None]
    problems = [(path, "not an image file") for path in others] + failed
    if problems:
        # With a limit only a subset was decoded: scale its failures up to the whole folder.
        image_files = sum(map(len, class_files))
        estimated_failures = len(failed) * image_files / len(paths)
        bad_fraction = (len(others) + estimated_failures) / (len(others) + image_files)
        listed = ", ".join(f"{path.relative_to(root)} ({reason})" for path, reason in problems[:5])
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        message = f"{len(problems)} file(s) in {root} are not readable images: {listed}{more}"
        if bad_fraction > MAX_BAD_FRACTION:
            raise ToolkitError(f"{message}; that is more than {MAX_BAD_FRACTION:.0%} of the files, fix or remove them")
        warnings.warn(f"skipped {message}", ToolkitWarning, stacklevel=2)
    keep = [index for index, (image, _) in enumerate(decoded) if image is not None]
    if not keep:
        raise ToolkitError(f"data folder {root} holds no readable images")
    images = [decoded[index][0] for index in keep]
    labels = labels[keep]
    missing = [folder.name for index, folder in enumerate(class_dirs) if not np.any(labels == index)]
    if missing and limit is None:
        raise ToolkitError(f"class folder(s) {', '.join(missing)} in {root} hold no readable images")

    if all(image.ndim == 2 for image in images):
        images = [image[:, :, None] for image in images]
    else:  # decoded as BGR or grey HxW: every image RGB
        images = [preprocessing.convert_colour(image, "BGR", "RGB") for image in images]

    sizes = collections.Counter(image.shape[:2] for image in images)
    if len(sizes) > 1:
        (height, width), _ = sizes.most_common(1)[0]
        odd = [index for index, image in enumerate(images) if image.shape[:2] != (height, width)]
        example = paths[keep[odd[0]]]
        warnings.warn(
            f"{len(odd)} image(s) in {root} differ from the most common size {width}x{height} (e.g. "
            f"{example.relative_to(root)}: {images[odd[0]].shape[1]}x{images[odd[0]].shape[0]}); "
            "they were centre-cropped and resized to it",
            ToolkitWarning,
            stacklevel=2,
        )
        for index in odd:
            images[index] = _fit_to_size(images[index], height, width)
    return Dataset(np.stack(images), labels, [path.name for path in class_dirs], str(root.resolve()))


def stratified_subset(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Indices of a seeded subset of ``count`` examples with classes as balanced as possible."""
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    if not groups:
        return np.zeros(0, np.int64)
    # Round robin: every class's first shuffled example, then every class's second, ...
    ranks = np.concatenate([np.arange(len(group)) for group in groups])
    return np.sort(np.concatenate(groups)[np.argsort(ranks, kind="stable")[: max(count, 0)]]).astype(np.int64)


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, on the [0, 1] scale."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return pixels.mean(axis=0).tolist(), np.maximum(pixels.std(axis=0), 1e-3).tolist()

"""The image-folder loader on the committed sample and on small, deliberately broken folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from toolkit.errors import ToolkitError, ToolkitWarning
from training.data import load_dataset, load_image_folder, stratified_subset
from training.splits import check_trainable, train_validation_split


def make_folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (8, 8)) -> Path:
    """``classes``: name -> image count; every image is a solid BGR colour that encodes its class and index."""
    for class_index, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for index in range(count):
            image = np.full((*size, 3), (class_index * 20, index % 256, 100), np.uint8)
            cv2.imwrite(str(root / name / f"{index:03d}.png"), image)
    return root


def test_sample_folder_loads_rgb_with_sorted_class_ids(sample_dir: Path) -> None:
    dataset = load_image_folder(sample_dir)
    assert dataset.images.shape == (300, 32, 32, 3) and dataset.images.dtype == np.uint8
    assert dataset.class_names[0] == "airplane" and dataset.class_names[-1] == "truck"
    assert np.bincount(dataset.labels).tolist() == [30] * 10
    first = sorted((sample_dir / "airplane").iterdir())[0]
    np.testing.assert_array_equal(dataset.images[0], cv2.imread(str(first))[:, :, ::-1])
    # --limit decodes only the subset, and picks the same images as subsetting the full load.
    limited = load_dataset(str(sample_dir), limit=37, seed=3)
    chosen = stratified_subset(dataset.labels, 37, seed=3)
    np.testing.assert_array_equal(limited.images, dataset.images[chosen])
    np.testing.assert_array_equal(limited.labels, dataset.labels[chosen])
    train, validation = train_validation_split(dataset, 0.1, seed=0)
    assert len(validation) == 30 and np.bincount(validation.labels).tolist() == [3] * 10


def test_missing_one_class_and_empty_class(tmp_path: Path) -> None:
    with pytest.raises(ToolkitError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")
    with pytest.raises(ToolkitError, match="no class subfolders"):
        load_image_folder(tmp_path)
    make_folder(tmp_path / "one", {"cat": 2})
    with pytest.raises(ToolkitError, match=r"only one class \(cat\)"):
        load_image_folder(tmp_path / "one")
    root = make_folder(tmp_path / "two", {"cat": 2, "dog": 2})
    (root / "empty_class").mkdir()
    (root / "empty_class" / "notes.txt").write_text("no images here")
    with pytest.raises(ToolkitError, match="class folder .*empty_class holds no images"):
        load_image_folder(root)


def test_bad_files_warn_below_one_percent_and_fail_above(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"cat": 60, "dog": 60})
    (root / "dog" / "broken.jpg").write_bytes(b"this is not a JPEG")
    (root / "cat" / ".DS_Store").write_bytes(b"\x00")  # hidden clutter is ignored silently
    with pytest.warns(ToolkitWarning, match=r"1 file\(s\) .*dog/broken\.jpg \(not a decodable image\)"):
        dataset = load_image_folder(root)
    assert len(dataset) == 120
    (root / "cat" / "readme.txt").write_text("hello")
    with pytest.raises(ToolkitError, match=r"2 file\(s\).*cat/readme\.txt \(not an image file\).*more than 1%"):
        load_image_folder(root)


def test_mixed_sizes_are_cropped_and_resized_to_the_most_common(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"cat": 3, "dog": 3})
    odd = np.zeros((12, 20, 3), np.uint8)
    odd[:, 4:16] = (0, 0, 255)  # red centre square (BGR), black side bands that the crop removes
    cv2.imwrite(str(root / "dog" / "wide.png"), odd)
    with pytest.warns(ToolkitWarning, match=r"1 image\(s\) .*most common size 8x8 .*dog/wide\.png: 20x12"):
        dataset = load_image_folder(root)
    assert dataset.images.shape == (7, 8, 8, 3)
    np.testing.assert_array_equal(dataset.images[-1], np.broadcast_to(np.array([255, 0, 0], np.uint8), (8, 8, 3)))


def test_grey_and_alpha_images_become_rgb_and_all_grey_stays_grey(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mixed", {"cat": 2, "dog": 2})
    cv2.imwrite(str(root / "cat" / "grey.png"), np.full((8, 8), 77, np.uint8))
    alpha = np.zeros((8, 8, 4), np.uint8)
    alpha[..., 0], alpha[..., 3] = 200, 128  # blue in BGRA
    cv2.imwrite(str(root / "dog" / "alpha.png"), alpha)
    dataset = load_image_folder(root)
    assert dataset.images.shape == (6, 8, 8, 3)
    names = sorted(path.name for path in (root / "cat").iterdir())
    np.testing.assert_array_equal(dataset.images[names.index("grey.png")], np.full((8, 8, 3), 77, np.uint8))
    np.testing.assert_array_equal(dataset.images[5, 0, 0], [0, 0, 200])  # RGB order, alpha dropped

    grey_root = tmp_path / "grey"
    for name in ("a", "b"):
        (grey_root / name).mkdir(parents=True)
        cv2.imwrite(str(grey_root / name / "0.png"), np.full((5, 5), 9, np.uint8))
    assert load_image_folder(grey_root).images.shape == (2, 5, 5, 1)


def test_unknown_spec_suffix_is_an_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "folder", {"cat": 1, "dog": 1})
    with pytest.raises(ToolkitError, match="applies to cifar10"):
        load_dataset(f"{root}:test")


def test_shared_images_load_a_balanced_subset(shared_cifar: Path) -> None:
    dataset = load_dataset(str(shared_cifar), limit=200)
    assert dataset.images.shape == (200, 32, 32, 3)
    assert np.bincount(dataset.labels).tolist() == [20] * 10


def test_images_in_subfolders_of_a_class_belong_to_it_and_classes_sort_by_name(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", {"apple": 3, "Banana": 2})
    (root / "apple" / "more" / "deeper").mkdir(parents=True)
    for index, folder in enumerate((root / "apple" / "more", root / "apple" / "more" / "deeper")):
        cv2.imwrite(str(folder / f"extra{index}.png"), np.zeros((8, 8, 3), np.uint8))
    (root / "apple" / ".thumbnails").mkdir()
    cv2.imwrite(str(root / "apple" / ".thumbnails" / "hidden.png"), np.zeros((8, 8, 3), np.uint8))
    dataset = load_image_folder(root)
    assert dataset.class_names == ["Banana", "apple"]  # by name (code point), the same on every OS
    assert np.bincount(dataset.labels).tolist() == [2, 5]  # nested images count; hidden folders do not


def test_a_validation_fraction_that_empties_a_class_is_one_line(tmp_path: Path) -> None:
    dataset = load_image_folder(make_folder(tmp_path / "data", {"a": 30, "b": 30}))
    with pytest.raises(ToolkitError, match=r"--validation-fraction 0.99 puts every image of class 'a' into validation"):
        check_trainable(*train_validation_split(dataset, 0.99), 0.99)

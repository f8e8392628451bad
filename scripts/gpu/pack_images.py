"""Pack an image folder (ROOT/<class>/<file>) into one .npz of raw file bytes, and unpack it again.

The GPU machine receives the repository (64 MiB at most) but not ../shared; a tar of
the 50,000 CIFAR-10 JPEGs is 77 MB because of its 512-byte headers, while the bytes
alone are about 50 MB. Only numpy is needed on either side.

    python scripts/gpu/pack_images.py pack ../shared/data/cifar10-jpeg/train .gpu_data/cifar10-train.npz
    python scripts/gpu/pack_images.py unpack .gpu_data/cifar10-train.npz /tmp/cifar10-jpeg/train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def pack(root: Path, destination: Path) -> None:
    """Write every file under ``root``'s class folders, byte for byte, into ``destination``."""
    names: list[str] = []
    chunks: list[bytes] = []
    for class_dir in sorted(path for path in root.iterdir() if path.is_dir()):
        for path in sorted(class_dir.iterdir()):
            if path.is_file():
                names.append(f"{class_dir.name}/{path.name}")
                chunks.append(path.read_bytes())
    offsets = np.cumsum([0] + [len(chunk) for chunk in chunks]).astype(np.int64)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_suffix(".partial.npz")
    np.savez(temporary, blob=np.frombuffer(b"".join(chunks), dtype=np.uint8), offsets=offsets, names=np.array(names))
    temporary.replace(destination)
    print(f"packed {len(names)} files, {offsets[-1] / 1e6:.1f} MB -> {destination}")


def unpack(source: Path, root: Path) -> None:
    """Recreate the folder that :func:`pack` read."""
    archive = np.load(source)
    blob, offsets, names = archive["blob"], archive["offsets"], archive["names"]
    for index, name in enumerate(names):
        path = root / str(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob[offsets[index] : offsets[index + 1]].tobytes())
    print(f"unpacked {len(names)} files -> {root}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    args = parser.parse_args()
    (pack if args.action == "pack" else unpack)(args.source, args.destination)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image-folder trees: `train/<class>/*.png|jpg`, `test/<class>/*`, as a folder or a tar archive.

Class folders must be named after the dataset's classes (their label is the index in
`spec.class_names`, CIFAR-10's label order); images must already have the dataset's size and mode
(32x32 RGB for CIFAR-10) and are decoded with Pillow. Hidden files (`.DS_Store`, `._x.jpg`) are
skipped. A tar archive may hold the tree under one top-level folder.
"""

from __future__ import annotations

import io
import tarfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from fastnn.data.errors import DataError
from fastnn.data.limits import MAX_IMAGE_FILE_BYTES, MAX_IMAGE_PIXELS, checked_members, read_file, read_member
from fastnn.data.rawdata import RawData
from fastnn.data.registry import DatasetSpec

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MODES = {1: "L", 3: "RGB"}


def decode_image(data: bytes, source: str, shape: tuple[int, int, int]) -> np.ndarray:
    """Decode one image file's bytes to uint8 (H, W, C); its size and mode must already match."""
    h, w, c = shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                size, mode = image.size, image.mode
                if size[0] * size[1] > MAX_IMAGE_PIXELS:
                    raise DataError(f"{source}: image declares {size[0]}x{size[1]} pixels, more "
                                    f"than the {MAX_IMAGE_PIXELS} fastnn decodes")
                fits = size == (w, h) and mode == MODES[c]
                pixels = np.asarray(image, dtype=np.uint8) if fits else None
    except UnidentifiedImageError:
        raise DataError(f"{source}: not an image file Pillow can read (expected PNG or "
                        f"JPEG)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise DataError(f"{source}: cannot decode image ({exc})") from exc
    if size != (w, h):
        raise DataError(f"{source}: image is {size[0]}x{size[1]}, expected {w}x{h}")
    if mode != MODES[c]:
        raise DataError(f"{source}: image mode is {mode}, expected {MODES[c]}")
    return pixels.reshape(shape)


def classify(parts: tuple[str, ...], spec: DatasetSpec, source: str) -> tuple[str, int] | None:
    """(split, label) of a file at relative path `parts` = (split, class, file); None to skip it."""
    if any(p.startswith(".") for p in parts):
        return None
    if len(parts) != 3 or parts[0] not in SPLITS:
        raise DataError(f"{source}: unexpected file; an image-folder tree holds "
                        f"train/<class>/<image> and test/<class>/<image> only")
    split, cls, filename = parts
    if cls not in spec.class_names:
        raise DataError(f"{source}: unknown class folder {cls!r}; {spec.name} classes are "
                        f"{', '.join(spec.class_names)}")
    if not filename.lower().endswith(IMAGE_SUFFIXES):
        raise DataError(f"{source}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
    return split, spec.class_names.index(cls)


def stack_tree(spec: DatasetSpec, items: Iterable[tuple[tuple[str, ...], str, bytes]],
               where: str) -> RawData:
    """RawData from (relative parts, source name, file bytes) triples, ordered by label then name."""
    found: dict[str, list[tuple[int, str, np.ndarray]]] = {s: [] for s in SPLITS}
    for parts, source, data in items:
        kind = classify(parts, spec, source)
        if kind is not None:
            found[kind[0]].append((kind[1], parts[2], decode_image(data, source, spec.image_shape)))
    arrays = []
    for split in SPLITS:
        if not found[split]:
            raise DataError(f"{where}: no images under {split}/ (expected {split}/<class>/<image>)")
        found[split].sort(key=lambda item: item[:2])
        arrays.append(np.stack([item[2] for item in found[split]]))
        arrays.append(np.array([item[0] for item in found[split]], dtype=np.uint8))
    return RawData(*arrays, spec.class_names, where)


def is_tree_dir(folder: Path) -> bool:
    """Whether `folder` holds `train/` and `test/` subfolders."""
    return all((folder / split).is_dir() for split in SPLITS)


def _walk_tree(folder: Path) -> Iterator[tuple[tuple[str, ...], str, bytes]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            parts = path.relative_to(folder).parts
            hidden = parts[-1].startswith(".")
            yield parts, str(path), (b"" if hidden else read_file(path, MAX_IMAGE_FILE_BYTES, "an image file"))


def read_tree_dir(spec: DatasetSpec, folder: Path) -> RawData:
    """An image-folder tree rooted at `folder` (which holds `train/` and `test/`)."""
    try:
        return stack_tree(spec, _walk_tree(folder), str(folder))
    except OSError as exc:
        raise DataError(f"{exc.filename or folder}: cannot read file ({exc.strerror or exc})") from exc


def _tree_members(members: tarfile.TarFile, path: Path) -> Iterator[tuple[tuple[str, ...], str, bytes]]:
    prefix: tuple[str, ...] | None = None
    for member in checked_members(members, path, MAX_IMAGE_FILE_BYTES):
        if not member.isfile():
            continue
        parts = PurePosixPath(member.name).parts
        parts = parts[1:] if parts and parts[0] == "." else parts
        if prefix is None:  # the tree's root: "" or the one top-level folder above train/, test/
            prefix = parts[:1] if len(parts) == 4 and parts[1] in SPLITS else ()
        if parts[:len(prefix)] != prefix:
            raise DataError(f"{path}:{member.name}: outside the archive's top-level folder "
                            f"{prefix[0]}/")
        parts = parts[len(prefix):]
        hidden = any(p.startswith(".") for p in parts)
        yield parts, f"{path}:{member.name}", (b"" if hidden else read_member(members, member, path))


def read_tree_tar(spec: DatasetSpec, path: Path, members: tarfile.TarFile) -> RawData:
    """An image-folder tree inside the tar archive `path`, already opened as `members`."""
    return stack_tree(spec, _tree_members(members, path), str(path))

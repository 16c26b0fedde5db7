"""Is a ``--dataset`` value one of the user's own (a table file or an image folder)?"""

from __future__ import annotations

from fastnn.data.imagefolder import is_image_folder
from fastnn.data.tabular import is_table_path


def is_own_dataset(name: object) -> bool:
    """Whether ``name`` is a dataset file (.csv, .parquet, .npz) or image folder of the user's,
    not a built-in dataset name."""
    return is_table_path(name) or is_image_folder(name)

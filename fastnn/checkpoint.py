"""Checkpoints: weights, architecture, optimizer state and a format version in one ``.npz``.

The file is a plain NumPy ``.npz`` (a zip of ``.npy`` members) read with ``allow_pickle=False``:

====================  ==========================================================================
member                content
====================  ==========================================================================
``format``            the string ``"fastnn-checkpoint"``
``format_version``    int64 scalar, :data:`FORMAT_VERSION`
``architecture``      JSON string: ``FFNN.config()``
``params``            the flat parameter arena (model dtype)
``optimizer``         JSON string: name, hyperparameters, step count, scalars (optional)
``optimizer.<name>``  each optimizer state buffer (optional)
``metadata``          JSON string of user metadata: class names, normalisation, … (optional)
====================  ==========================================================================

Saving writes a temporary file beside the target and renames it over the target, so a crash never
leaves a half-written checkpoint. Loading validates everything before building the model, so a
corrupt, truncated or mismatched file raises :class:`CheckpointError` and never yields a
half-loaded model.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastnn.fileio import atomic_open

FORMAT = "fastnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated, or does not match what it declares."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    model : the rebuilt FFNN. optimizer_state : an ``Optimizer.state_dict()`` or None.
    metadata : the user metadata dict saved with it.
    """

    model: object
    optimizer_state: dict | None = None
    metadata: dict = field(default_factory=dict)

    def build_optimizer(self):
        """Recreate the saved optimizer for ``self.model`` with its state restored (or None)."""
        if self.optimizer_state is None:
            return None
        from fastnn.optim import get_optimizer

        state = self.optimizer_state
        opt = get_optimizer(state["name"], self.model, **state["hyperparameters"])
        opt.load_state_dict(state)
        return opt


def _json(value) -> np.ndarray:
    return np.array(json.dumps(value, sort_keys=True))


def save(model, path, optimizer=None, metadata: dict | None = None) -> Path:
    """Write ``model`` (and ``optimizer``'s state, and ``metadata``) to ``path`` atomically.

    ``path`` gets a ``.npz`` suffix if it has none. Returns the final path. ``metadata`` must be
    JSON-serialisable (a TypeError names the problem before anything is written).
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    members = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "architecture": _json(model.config()),
        "params": model.arena,
    }
    if optimizer is not None:
        if optimizer.model is not model:
            raise ValueError("optimizer is bound to a different model than the one being saved.")
        state = optimizer.state_dict()
        members["optimizer"] = _json({k: state[k] for k in ("name", "hyperparameters", "step_count", "scalars")})
        for name, buf in state["buffers"].items():
            members[f"optimizer.{name}"] = buf
    try:
        members["metadata"] = _json(metadata or {})
    except TypeError as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None

    with atomic_open(path) as fh:
        np.savez(fh, **members)
    return path


def _read_json(members: dict, key: str, path: Path):
    try:
        return json.loads(str(members[key][()]))
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: member {key!r} is not valid JSON ({exc}).") from None


def _read_members(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable fastnn checkpoint (corrupt or truncated: "
                              f"{type(exc).__name__}: {exc}).") from None


def load_checkpoint(path, backend=None) -> Checkpoint:
    """Read and validate a checkpoint and rebuild its model (on ``backend``, default "numpy").

    Raises CheckpointError for a missing, corrupt, truncated or inconsistent file.
    """
    from fastnn.model import FFNN

    path = Path(path)
    members = _read_members(path)
    for key in ("format", "format_version", "architecture", "params"):
        if key not in members:
            raise CheckpointError(f"{path}: missing member {key!r}; not a fastnn checkpoint.")
    if str(members["format"][()]) != FORMAT:
        raise CheckpointError(f"{path}: format is {str(members['format'][()])!r}, expected {FORMAT!r}.")
    version = int(members["format_version"][()])
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version} is not supported by this fastnn "
                              f"(reads version {FORMAT_VERSION}).")
    config = _read_json(members, "architecture", path)
    try:
        model = FFNN(**config, backend=backend or "numpy")
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid architecture: {exc}") from None
    params = members["params"]
    if params.shape != model.arena.shape or params.dtype != model.dtype:
        raise CheckpointError(f"{path}: params have shape {params.shape} and dtype {params.dtype}, but "
                              f"the architecture needs {model.arena.shape} {model.dtype}.")
    if not np.isfinite(params).all():
        raise CheckpointError(f"{path}: params contain NaN or infinite values.")
    optimizer_state = None
    if "optimizer" in members:
        optimizer_state = _read_json(members, "optimizer", path)
        prefix = "optimizer."
        optimizer_state["buffers"] = {k[len(prefix):]: v for k, v in members.items() if k.startswith(prefix)}
        for name, buf in optimizer_state["buffers"].items():
            if buf.shape != model.arena.shape or buf.dtype != model.dtype:
                raise CheckpointError(f"{path}: optimizer buffer {name!r} has shape {buf.shape} "
                                      f"{buf.dtype}, expected {model.arena.shape} {model.dtype}.")
    metadata = _read_json(members, "metadata", path) if "metadata" in members else {}
    model.copy_params_from(params)
    return Checkpoint(model=model, optimizer_state=optimizer_state, metadata=metadata)


def load(path, backend=None):
    """Load the model of a checkpoint (see :func:`load_checkpoint`)."""
    return load_checkpoint(path, backend).model

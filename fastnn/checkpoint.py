"""Checkpoints: weights, architecture, optimizer state and a format version in one ``.npz``.

The file is a plain NumPy ``.npz`` (a zip of ``.npy`` members) read with ``allow_pickle=False``:

====================  ==========================================================================
member                content
====================  ==========================================================================
``format``            the string ``"fastnn-checkpoint"``
``format_version``    int64 scalar, :data:`FORMAT_VERSION`
``architecture``      JSON string: ``FFNN.config()``
``params``            the flat parameter arena (model dtype), normalisation γ/β included
``running_mean``      BatchNorm's running means, (Σ batch-normalised widths,) model dtype; present
                      exactly when the architecture has batch-normalised layers
``running_var``       BatchNorm's running variances, same shape, finite and >= 0
``optimizer``         JSON string: name, hyperparameters, step count, scalars (optional)
``optimizer.<name>``  each optimizer state buffer (optional)
``metadata``          JSON string of user metadata: class names, normalisation, … (optional)
====================  ==========================================================================

Saving writes a temporary file beside the target and renames it over the target, so a crash never
leaves a half-written checkpoint. Loading validates everything before building the model, so a
corrupt, truncated, crafted or mismatched file raises :class:`CheckpointError` (naming the file and
the problem) and never yields a half-loaded model. Members are read header first and only when
their shape and dtype match the declared architecture, and no member may declare more data than
it occupies in the file, so loading allocates about the file's own arrays and no more.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
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
    metadata : the user metadata dict saved with it. optimizer : the restored optimizer or None.
    """

    model: object
    optimizer_state: dict | None = None
    metadata: dict = field(default_factory=dict)
    optimizer: object = None

    def build_optimizer(self):
        """The saved optimizer, bound to ``self.model`` with its state restored (or None).

        :func:`load_checkpoint` already built it (that is how its hyperparameters were checked);
        this returns that instance.
        """
        return self.optimizer


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
    if model.running_mean.size:
        members["running_mean"] = model.running_mean
        members["running_var"] = model.running_var
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


# ---------------------------------------------------------------------- reading, bounded
MAX_TEXT_BYTES = 16 << 20
"""Largest JSON/string member read (architecture, optimizer, metadata): 16 MiB."""
_TEXT_MEMBERS = ("format", "architecture", "optimizer", "metadata")
MAX_LAYERS = 1000
"""Most layers a checkpoint may declare (each costs Python objects however small it is)."""


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {problem}")


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    if isinstance(exc, zipfile.BadZipFile) and "not a zip file" in str(exc):
        return _fail(path, "not a readable fastnn checkpoint: the file is not an .npz (zip) "
                           "archive (a checkpoint is what `fastnn train` writes as model.npz).")
    return _fail(path, f"not a readable fastnn checkpoint (corrupt or truncated: "
                       f"{type(exc).__name__}: {exc}).")


class _Members:
    """The ``.npy`` members of an ``.npz`` read one at a time, header first.

    Nothing is decompressed or allocated until a member's header (shape, dtype) has been checked
    by the caller, and a member may not declare more data bytes than it occupies in the file, so
    reading every member allocates at most the file's size (no zip bombs).
    """

    def __init__(self, path: Path, zf: zipfile.ZipFile):
        self.path, self.zf = path, zf
        size = path.stat().st_size
        self.infos: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise _fail(path, f"member {info.filename!r} is not a .npy array; not a fastnn "
                                  f"checkpoint.")
            if info.compress_size > size:
                raise _fail(path, f"member {info.filename!r} declares {info.compress_size} bytes, "
                                  f"more than the file's {size}; the file is corrupt.")
            self.infos[info.filename[:-4]] = info

    def __contains__(self, key: str) -> bool:
        return key in self.infos

    def names(self) -> list[str]:
        return list(self.infos)

    def header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) from the member's .npy header, without reading its data."""
        with self.zf.open(self.infos[key]) as fp:
            return self._header(fp, key)

    def _header(self, fp, key: str) -> tuple[tuple[int, ...], np.dtype]:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        if dtype.hasobject:
            raise _fail(self.path, f"member {key!r} holds pickled Python objects (dtype "
                                   f"{dtype}); fastnn checkpoints never do, so it is not loaded.")
        if fortran and len(shape) > 1:
            raise _fail(self.path, f"member {key!r} is Fortran-ordered; fastnn writes C order.")
        return tuple(shape), dtype

    def read(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The member's array; its header must declare exactly ``shape`` and ``dtype``."""
        info = self.infos[key]
        with self.zf.open(info) as fp:
            found_shape, found_dtype = self._header(fp, key)
            if found_shape != shape or found_dtype != dtype:
                raise _fail(self.path, f"member {key!r} has shape {found_shape} and dtype "
                                       f"{found_dtype}, expected {shape} {dtype}.")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > info.compress_size:
                raise _fail(self.path, f"member {key!r} declares {nbytes} bytes of data but "
                                       f"occupies {info.compress_size} bytes in the file; fastnn "
                                       f"checkpoints are stored uncompressed.")
            data = fp.read(nbytes)
        if len(data) != nbytes:
            raise _fail(self.path, f"member {key!r} is truncated: {len(data)} of {nbytes} bytes.")
        return np.frombuffer(data, dtype=dtype).reshape(shape)

    def text(self, key: str) -> str:
        """A 0-d string member (bounded by MAX_TEXT_BYTES)."""
        shape, dtype = self.header(key)
        if shape != () or dtype.kind != "U":
            raise _fail(self.path, f"member {key!r} must be a string, got an array of shape "
                                   f"{shape} and dtype {dtype}.")
        if dtype.itemsize > MAX_TEXT_BYTES:
            raise _fail(self.path, f"member {key!r} is {dtype.itemsize} bytes, more than the "
                                   f"{MAX_TEXT_BYTES} a checkpoint's text may hold.")
        return str(self.read(key, shape, dtype)[()])

    def json(self, key: str):
        text = self.text(key)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise _fail(self.path, f"member {key!r} is not valid JSON ({exc}).") from None


_RUNNING_MEMBERS = ("running_mean", "running_var")


def _check_architecture(config: object, path: Path) -> tuple[dict, int, int]:
    """The architecture dict, its parameter count and its BatchNorm running-statistics size,
    checked before anything is built."""
    if not isinstance(config, dict):
        raise _fail(path, f"invalid architecture: expected a JSON object, got "
                          f"{type(config).__name__}.")
    sizes = config.get("layer_sizes")
    if (not isinstance(sizes, list) or not 2 <= len(sizes) <= MAX_LAYERS + 1
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)):
        shown = sizes if not isinstance(sizes, list) or len(sizes) <= 12 else f"{len(sizes)} sizes"
        raise _fail(path, f"invalid architecture: layer_sizes must be a list of 2 to {MAX_LAYERS + 1} "
                          f"integers >= 1, got {shown!r}.")
    dtype = config.get("dtype")
    if dtype not in ("float32", "float64"):
        raise _fail(path, f"invalid architecture: dtype must be 'float32' or 'float64', got {dtype!r}.")
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    norms = config.get("normalization")
    if norms is None:
        norms = [None] * (len(sizes) - 2)
    if (not isinstance(norms, list) or len(norms) != len(sizes) - 2
            or not all(k in (None, "batch", "layer") for k in norms)):
        raise _fail(path, f"invalid architecture: normalization must be a list of one entry per "
                          f"hidden layer ({len(sizes) - 2}), each null, 'batch' or 'layer', got "
                          f"{norms if not isinstance(norms, list) or len(norms) <= 12 else f'{len(norms)} entries'!r}.")
    n_params += sum(2 * h for h, k in zip(sizes[1:-1], norms) if k)
    n_running = sum(h for h, k in zip(sizes[1:-1], norms) if k == "batch")
    return config, n_params, n_running


def _check_finite(array: np.ndarray, what: str, path: Path) -> None:
    if not np.isfinite(array).all():
        raise _fail(path, f"{what} holds NaN or infinite values.")


def _check_optimizer(state: object, members: _Members, n_params: int, dtype: np.dtype,
                     path: Path) -> dict:
    """The optimizer JSON's fields and buffers, type-checked; the rules of each hyperparameter
    are the optimizer constructor's (applied in :func:`load_checkpoint`)."""
    if not isinstance(state, dict):
        raise _fail(path, f"invalid optimizer state: expected a JSON object, got "
                          f"{type(state).__name__}.")
    for key, kind in (("name", str), ("hyperparameters", dict), ("step_count", int),
                      ("scalars", dict)):
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _fail(path, f"invalid optimizer state: {key!r} must be a {kind.__name__}, got "
                              f"{value!r}.")
    if state["step_count"] < 0:
        raise _fail(path, f"invalid optimizer state: step_count must be >= 0, got "
                          f"{state['step_count']}.")
    for key, value in state["scalars"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(path, f"invalid optimizer state: scalar {key!r} must be a finite number, "
                              f"got {value!r}.")
    prefix = "optimizer."
    buffers = {}
    for key in members.names():
        if key.startswith(prefix):
            buf = members.read(key, (n_params,), dtype)
            _check_finite(buf, f"optimizer buffer {key[len(prefix):]!r}", path)
            buffers[key[len(prefix):]] = buf
    return {**state, "buffers": buffers}


def _check_metadata(metadata: object, sizes: list[int], path: Path) -> dict:
    """Class names, image shape and normalisation statistics, where present, against the model."""
    if not isinstance(metadata, dict):
        raise _fail(path, f"invalid metadata: expected a JSON object, got {type(metadata).__name__}.")
    if "dataset" in metadata and not isinstance(metadata["dataset"], str):
        raise _fail(path, f"invalid metadata: dataset must be a dataset name, got "
                          f"{metadata['dataset']!r}.")
    names = metadata.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _fail(path, f"invalid metadata: class_names must be a list of strings, got "
                              f"{names!r}.")
        if len(names) != sizes[-1]:
            raise _fail(path, f"invalid metadata: {len(names)} class names for a model with "
                              f"{sizes[-1]} outputs.")
    shape = metadata.get("image_shape")
    channels = None
    if shape is not None:
        if (not isinstance(shape, list) or not shape
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
                or math.prod(shape) != sizes[0]):
            raise _fail(path, f"invalid metadata: image_shape must be positive integers whose "
                              f"product is the input size {sizes[0]}, got {shape!r}.")
        channels = shape[-1]
    for key in ("mean", "std"):
        if key not in metadata:
            continue
        value = metadata[key]
        values = value if isinstance(value, list) else [value]
        if (not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                  and math.isfinite(v) for v in values)):
            raise _fail(path, f"invalid metadata: {key} must be a finite number or a list of "
                              f"them, got {value!r}.")
        if len(values) != 1 and len(values) != (channels or len(values)):
            raise _fail(path, f"invalid metadata: {key} has {len(values)} values, expected 1 or "
                              f"one per channel ({channels}).")
        if channels is None and sizes[0] % len(values):
            raise _fail(path, f"invalid metadata: {key} has {len(values)} values, which do not "
                              f"divide the input size {sizes[0]}.")
        if key == "std" and min(values) <= 0:
            raise _fail(path, f"invalid metadata: std must be > 0, got {value!r}.")
    return metadata


def _read_running_stats(members: _Members, n_running: int, dtype: np.dtype,
                        path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """BatchNorm's running mean and variance: required (shape ``(n_running,)``, finite, variance
    >= 0) when the architecture has batch-normalised layers, refused otherwise."""
    present = [k for k in _RUNNING_MEMBERS if k in members]
    if not n_running:
        if present:
            raise _fail(path, f"member(s) {present} but the architecture has no batch-normalised "
                              f"layer.")
        return None
    missing = [k for k in _RUNNING_MEMBERS if k not in members]
    if missing:
        raise _fail(path, f"missing member(s) {missing}: the architecture's batch-normalised "
                          f"layers need their running statistics.")
    mean = members.read("running_mean", (n_running,), dtype)
    var = members.read("running_var", (n_running,), dtype)
    _check_finite(mean, "running_mean", path)
    _check_finite(var, "running_var", path)
    if var.min() < 0:
        raise _fail(path, f"running_var must be >= 0, got a minimum of {var.min()}.")
    return mean, var


def load_checkpoint(path, backend=None) -> Checkpoint:
    """Read and validate a checkpoint and rebuild its model (on ``backend``, default "numpy").

    Everything is checked before the model is built: the format and its version, the
    architecture (its normalisation layers included), every array's name, shape, dtype and
    finiteness against the architecture (BatchNorm's running statistics included), the
    optimizer's name and hyperparameters (by the optimizer's own constructor) and state, and the
    metadata (class names, image shape, normalisation). Array data is read only after its header
    matched, so a crafted file cannot make this allocate much more than its own arrays.
    Raises CheckpointError naming the file and the problem.
    """
    from fastnn.model import FFNN
    from fastnn.optim import get_optimizer

    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such checkpoint file.")
    try:
        with zipfile.ZipFile(path) as zf:
            members = _Members(path, zf)
            for key in ("format", "format_version", "architecture", "params"):
                if key not in members:
                    raise _fail(path, f"missing member {key!r}; not a fastnn checkpoint.")
            unknown = [k for k in members.names() if k not in (*_TEXT_MEMBERS, *_RUNNING_MEMBERS,
                                                                "format_version", "params")
                       and not k.startswith("optimizer.")]
            if unknown:
                raise _fail(path, f"unknown member(s) {unknown}; not a fastnn checkpoint.")
            found = members.text("format")
            if found != FORMAT:
                raise _fail(path, f"format is {found!r}, expected {FORMAT!r}.")
            shape, dtype = members.header("format_version")
            if shape != () or dtype.kind not in "iu":
                raise _fail(path, f"format_version must be an integer scalar, got an array of "
                                  f"shape {shape} and dtype {dtype}.")
            version = int(members.read("format_version", shape, dtype)[()])
            if version != FORMAT_VERSION:
                raise _fail(path, f"format version {version} is not supported by this fastnn "
                                  f"(reads version {FORMAT_VERSION}).")
            config, n_params, n_running = _check_architecture(members.json("architecture"), path)
            dtype = np.dtype(config["dtype"])
            p_shape, p_dtype = members.header("params")
            if p_shape != (n_params,) or p_dtype != dtype:
                raise _fail(path, f"params have shape {p_shape} and dtype {p_dtype}, but the "
                                  f"architecture needs ({n_params},) {dtype}.")
            params = members.read("params", (n_params,), dtype)
            _check_finite(params, "the params array", path)
            running = _read_running_stats(members, n_running, dtype, path)
            optimizer_state = None
            if "optimizer" in members:
                optimizer_state = _check_optimizer(members.json("optimizer"), members, n_params,
                                                   dtype, path)
            elif any(k.startswith("optimizer.") for k in members.names()):
                raise _fail(path, "optimizer buffers without an 'optimizer' member.")
            metadata = members.json("metadata") if "metadata" in members else {}
            metadata = _check_metadata(metadata, config["layer_sizes"], path)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError,
            NotImplementedError, RuntimeError, zlib.error) as exc:
        raise _corrupt(path, exc) from None

    try:
        model = FFNN(**config, backend=backend or "numpy")
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"invalid architecture: {exc}") from None
    model.copy_params_from(params)
    if running is not None:
        model.copy_running_stats_from(*running)
    optimizer = None
    if optimizer_state is not None:
        try:
            optimizer = get_optimizer(optimizer_state["name"], model,
                                      **optimizer_state["hyperparameters"])
        except (TypeError, ValueError) as exc:
            raise _fail(path, f"invalid optimizer: {exc}") from None
        expected = sorted(optimizer.state)
        if sorted(optimizer_state["buffers"]) != expected:
            raise _fail(path, f"optimizer {optimizer_state['name']!r} has buffers "
                              f"{sorted(optimizer_state['buffers'])}, expected {expected}.")
        if sorted(optimizer_state["scalars"]) != sorted(optimizer.scalars()):
            raise _fail(path, f"optimizer {optimizer_state['name']!r} has scalars "
                              f"{sorted(optimizer_state['scalars'])}, expected "
                              f"{sorted(optimizer.scalars())}.")
        try:
            optimizer.load_state_dict(optimizer_state)
        except (TypeError, ValueError) as exc:
            raise _fail(path, f"invalid optimizer state: {exc}") from None
    return Checkpoint(model=model, optimizer_state=optimizer_state, metadata=metadata,
                      optimizer=optimizer)


def load(path, backend=None):
    """Load the model of a checkpoint (see :func:`load_checkpoint`)."""
    return load_checkpoint(path, backend).model

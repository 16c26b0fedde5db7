"""fastnn: feedforward neural networks from scratch, fast on a plain CPU.

Public API::

    import fastnn
    model = fastnn.FFNN([784, 256, 128, 10], activation="relu", backend="numba", seed=0)
    opt = fastnn.optim.Adam(model, lr=1e-3)
    history = model.fit(X, y, epochs=10, batch_size=128, optimizer=opt, validation_split=0.1)
    fastnn.save(model, "model.npz"); model = fastnn.load("model.npz")
"""

__version__ = "0.1.0"

# The public names are imported on first use (PEP 562), so `import fastnn.cli` (the console
# script) starts without NumPy and Numba and can turn a Ctrl-C during those imports into a quiet
# exit 130. `import fastnn` and `from fastnn import FFNN` work as before.
_LAZY = {
    "metrics": ("fastnn.metrics", None), "optim": ("fastnn.optim", None),
    "Backend": ("fastnn.backends", "Backend"), "NumpyBackend": ("fastnn.backends", "NumpyBackend"),
    "get_backend": ("fastnn.backends", "get_backend"),
    "Checkpoint": ("fastnn.checkpoint", "Checkpoint"),
    "CheckpointError": ("fastnn.checkpoint", "CheckpointError"),
    "load": ("fastnn.checkpoint", "load"), "load_checkpoint": ("fastnn.checkpoint", "load_checkpoint"),
    "save": ("fastnn.checkpoint", "save"), "FFNN": ("fastnn.model", "FFNN"),
    "EarlyStopping": ("fastnn.callbacks", "EarlyStopping"), "Callback": ("fastnn.training", "Callback"),
    "History": ("fastnn.training", "History"), "Trainer": ("fastnn.training", "Trainer"),
    "TrainingDivergedError": ("fastnn.training", "TrainingDivergedError"),
    "LayerHealth": ("fastnn.diagnostics", "LayerHealth"),
}

__all__ = [
    "FFNN", "Backend", "NumpyBackend", "get_backend", "optim", "metrics", "save", "load",
    "load_checkpoint", "Checkpoint", "CheckpointError", "Trainer", "Callback", "EarlyStopping",
    "History", "TrainingDivergedError", "LayerHealth", "__version__",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

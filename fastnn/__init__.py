"""fastnn: feedforward neural networks from scratch, fast on a plain CPU.

Public API::

    import fastnn
    model = fastnn.FFNN([784, 256, 128, 10], activation="relu", backend="numba", seed=0)
    opt = fastnn.optim.Adam(model, lr=1e-3)
    history = model.fit(X, y, epochs=10, batch_size=128, optimizer=opt, validation_split=0.1)
    fastnn.save(model, "model.npz"); model = fastnn.load("model.npz")
"""

__version__ = "0.1.0"

from fastnn import metrics, optim
from fastnn.backend import Backend, NumpyBackend, get_backend
from fastnn.checkpoint import Checkpoint, CheckpointError, load, load_checkpoint, save
from fastnn.model import FFNN
from fastnn.callbacks import EarlyStopping
from fastnn.training import Callback, History, Trainer, TrainingDivergedError

__all__ = [
    "FFNN", "Backend", "NumpyBackend", "get_backend", "optim", "metrics", "save", "load",
    "load_checkpoint", "Checkpoint", "CheckpointError", "Trainer", "Callback", "EarlyStopping",
    "History", "TrainingDivergedError", "__version__",
]

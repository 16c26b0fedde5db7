"""No allocation grows across epochs: work buffers are made once per batch size and reused."""

from __future__ import annotations

import tracemalloc

import numpy as np

import fastnn


def test_training_memory_does_not_grow_across_epochs(backend_name):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2_000, 64)).astype(np.float32)
    y = rng.integers(0, 10, 2_000)
    model = fastnn.FFNN([64, 128, 64, 10], dropout=0.1, backend=backend_name, seed=0)
    trainer = fastnn.Trainer(model, "adam")
    trainer.fit(X, y, epochs=1, batch_size=128)  # buffers, compilation, first-call caches
    tracemalloc.start()
    try:
        trainer.fit(X, y, epochs=1, batch_size=128)
        first, _ = tracemalloc.get_traced_memory()
        trainer.fit(X, y, epochs=5, batch_size=128)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # History grows by one small dict per epoch; anything per step or per buffer would be MBs.
    assert after - first < 20_000, f"grew by {after - first} bytes over 5 epochs"

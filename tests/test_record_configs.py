"""The checked-in record configs (configs/*.yaml) are valid run configs of the kind the README's
Accuracy table claims: numba backend, the whole training split, no early stopping."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastnn.config import RunConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECORDS = {"fashion-mnist-fast.yaml": "fashion-mnist", "fashion-mnist-best.yaml": "fashion-mnist",
           "cifar10-best.yaml": "cifar10"}


def test_every_record_config_is_checked_in():
    assert RECORDS.keys() <= {p.name for p in CONFIGS.glob("*.yaml")}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_record_config_is_valid_and_trains_on_the_whole_training_split(name):
    config = RunConfig.from_file(CONFIGS / name)
    assert config.dataset == RECORDS[name]
    assert config.backend == "numba"
    assert config.validation_split == 0.0 and config.limit is None
    assert config.early_stopping is None

"""Hyperparameter sweeps: a W&B sweep file, run by an embedded Optuna study or by W&B agents.

Modules, by concern:

=================  ==========================================================================
``schema``         the sweep file (W&B's sweep-configuration schema): read and validate
``space``          what each distribution means and its Optuna translation
``trial``          one trial as a normal training run: its RunConfig, folder and score
``storage``        SQLite / PostgreSQL study storage with heartbeats, and the study lock
``optuna_engine``  samplers, Hyperband pruning, the worker loop, worker processes
``wandb_engine``   ``wandb.sweep`` + an in-process ``wandb.agent``
``summary``        best trials, failures, parameter importances and their plot
=================  ==========================================================================
"""

from fastnn.sweeps.schema import SweepConfigError, SweepSpec, load_sweep, parse_sweep

__all__ = ["SweepConfigError", "SweepSpec", "load_sweep", "parse_sweep"]

"""The one exception type of the datasets layer."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file is missing, malformed or fails verification.

    The message names the file (or dataset) and the problem, so it can be shown to a user as is.
    """

"""Typed errors of the forecasting package.

Every error carries the values that explain it as attributes, so a caller (the
API error mapper, the CLI) can report them without parsing the message.
"""

from __future__ import annotations


class ForecastError(Exception):
    """Base of every error raised on purpose by :mod:`digitaltwin.forecasting`."""


class InsufficientHistoryError(ForecastError):
    """A series holds fewer samples than an operation needs.

    Args:
        available: samples available (on the series' regular grid).
        required: samples the operation needs.
        series: name of the series, for the message.
        purpose: what the samples are for ("history", "training rows" ...).

    Attributes:
        available: as given.
        required: as given.
        series: as given.
    """

    def __init__(self, *, available: int, required: int, series: str, purpose: str = "history") -> None:
        super().__init__(
            f"not enough {purpose} in series {series!r}: {available} samples available, {required} required"
        )
        self.available = available
        self.required = required
        self.series = series


class UnknownAlgorithmError(ForecastError):
    """A forecasting algorithm name that is not registered.

    Args:
        algorithm: the name asked for.
        known: the registered names.
    """

    def __init__(self, algorithm: str, known: list[str]) -> None:
        super().__init__(f"unknown forecasting algorithm {algorithm!r}; known: {', '.join(known)}")
        self.algorithm = algorithm
        self.known = list(known)


class NotFittedError(ForecastError):
    """``predict``, ``required_history`` or ``to_artifact`` called before ``fit``.

    Args:
        algorithm: name of the forecaster.
    """

    def __init__(self, algorithm: str) -> None:
        super().__init__(f"forecaster {algorithm!r} is not fitted; call fit() first")
        self.algorithm = algorithm

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


class InsufficientValidDataError(InsufficientHistoryError):
    """A series whose window holds too few non-missing values (e.g. all null).

    Args:
        available: non-missing samples in the window looked at.
        required: non-missing samples needed.
        series: name of the series.
        window: samples in the window looked at (valid or not).
    """

    def __init__(self, *, available: int, required: int, series: str, window: int) -> None:
        ForecastError.__init__(
            self,
            f"insufficient valid data in series {series!r}: {available} of {window} samples are valid "
            f"(not null), {required} required",
        )
        self.available = available
        self.required = required
        self.series = series
        self.window = window


class MissingExogenousError(ForecastError):
    """A model fitted with exogenous series was asked to predict without them (or with other columns).

    Args:
        expected: exogenous column names the model was fitted with.
        given: column names supplied.
    """

    def __init__(self, expected: list[str], given: list[str]) -> None:
        super().__init__(f"the model needs exogenous series {expected}; got {given}")
        self.expected = list(expected)
        self.given = list(given)


class NotCalibratedError(ForecastError):
    """Quantiles were asked of a model that has no calibration (too little history to hold some out).

    Args:
        algorithm: name of the forecaster.
    """

    def __init__(self, algorithm: str) -> None:
        super().__init__(
            f"forecaster {algorithm!r} has no interval calibration (too little history held out); "
            "train on more history to get quantiles"
        )
        self.algorithm = algorithm


class OptionalDependencyError(ForecastError):
    """An algorithm whose library is an optional extra that is not installed.

    Args:
        algorithm: name of the forecaster.
        extra: the ``pip install 'digitaltwin[extra]'`` name that brings the library.
    """

    def __init__(self, algorithm: str, extra: str) -> None:
        super().__init__(f"algorithm {algorithm!r} needs the optional extra: pip install 'digitaltwin[{extra}]'")
        self.algorithm = algorithm
        self.extra = extra

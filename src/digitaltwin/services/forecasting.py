"""Training, backtesting, champion/challenger and serving forecasts of an asset's energy.

The target is the asset's energy per interval (kWh) on a regular grid in UTC,
built from whatever series carries its energy (interval energy, counter or
power) by the steps of :func:`digitaltwin.services.energy.energy_report` (the same
numbers, without its per-bucket rows), at 15-minute resolution, or hourly for
series of hourly or longer intervals (declared, else the spacing of the latest readings). Gaps are NaN.

Exogenous series: an asset whose ``attributes`` hold
``{"forecast_exog": [{"asset_id": "weather-1", "quantity": "temperature"}]}``
is forecast with those series of the other asset (mean per interval of the
target grid, e.g. outdoor temperature in degC or irradiance in W/m2) as
features, by the algorithms that read them. Readings of the weather asset after
the last energy reading act as the weather forecast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from digitaltwin.analytics.energy import interval_length_s
from digitaltwin.analytics.meter import CounterRules
from digitaltwin.domain.assets import FORECAST_EXOG, Asset, Site, check_forecast_exog, check_site_country
from digitaltwin.domain.errors import NotFoundError, ValidationError
from digitaltwin.domain.units import SeriesKind
from digitaltwin.forecasting.algorithms import algorithm_class, canonical_name, make_forecaster
from digitaltwin.forecasting.backtest import DEFAULT_LEVELS, BacktestResult, backtest, daily_origins
from digitaltwin.forecasting.base import Forecast
from digitaltwin.forecasting.calibration import holdout_plan
from digitaltwin.forecasting.errors import InsufficientHistoryError
from digitaltwin.forecasting.plot import backtest_png
from digitaltwin.forecasting.series import samples_per_day
from digitaltwin.registry import champion as champion_rule
from digitaltwin.registry.backtests import BacktestRecord, BacktestStore
from digitaltwin.registry.errors import RegistryError
from digitaltwin.registry.serving import ModelServer
from digitaltwin.registry.store import ActiveModel, ModelManifest, ModelRegistry, data_fingerprint, parse_model_id
from digitaltwin.services.energy import (
    WindowReadings,
    bucket_totals,
    hold_until_us,
    pick_energy_series,
    read_window,
)
from digitaltwin.services.energy_rollups import rollup_totals
from digitaltwin.services.energy_rollups import settings as rollup_settings
from digitaltwin.services.forecast_cache import ForecastCache, forecast_key
from digitaltwin.services.meter import counter_rules
from digitaltwin.storage.repository import Repository, SeriesInfo
from digitaltwin.storage.tables import from_epoch_us, to_epoch_us

DAY_AHEAD_HORIZON = timedelta(days=1)
#: Most history a model is trained on (and a backtest reads before its first origin): three years
#: hold every seasonal pattern of a load twice over with a margin, and a stray reading years before
#: the rest of the data no longer makes a frame of decades of empty intervals.
MAX_TRAINING_HISTORY = timedelta(days=3 * 365 + 1)
#: Longest horizon served, trained or backtested: a month ahead (2,976 quarter hours). Operational
#: energy forecasts are day- to week-ahead; longer ones are planning questions, and an unbounded
#: horizon let any viewer ask for a 25 MB answer (ten years of quarter hours).
MAX_HORIZON = timedelta(days=31)
#: Local days of the champion/challenger holdout backtest run at every training.
HOLDOUT_DAYS = 14
#: The name that asks for the asset's champion.
BEST = "best"


@dataclass(frozen=True, slots=True)
class Target:
    """An asset's energy per interval: ``y`` in kWh indexed by UTC interval starts, plus exogenous columns."""

    y: pd.Series
    step: timedelta
    timezone: str
    country: str | None
    exog: pd.DataFrame | None = None


@dataclass(frozen=True, slots=True)
class ForecastResult:
    """A forecast: values (kWh per interval) and quantiles indexed by UTC interval starts."""

    asset_id: str
    algorithm: str
    forecast: Forecast
    step: timedelta
    manifest: ModelManifest | None

    @property
    def values(self) -> pd.Series:
        return self.forecast.values


@dataclass(frozen=True, slots=True)
class PreparedForecast:
    """What :meth:`ForecastService.prepare` read for one forecast request: the inputs, the model
    (a fresh stateless forecaster when ``manifest`` is None), the steps and levels asked for, the
    cache key of those inputs (None without a cache) and the forecast kept under it, if any."""

    asset_id: str
    inputs: _Inputs
    model: Any
    manifest: ModelManifest | None
    steps: int
    quantiles: tuple[float, ...]
    key: bytes | None
    kept: ForecastResult | None


@dataclass(frozen=True, slots=True)
class _Grid:
    """An asset with its site, the series carrying its energy, the target's step and the series' extent."""

    asset: Asset
    site: Site
    info: SeriesInfo
    step: timedelta
    extent: tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class _ExogReadings:
    """The readings of one exogenous series over the target window and the future slots."""

    name: str
    ts_s: np.ndarray
    values: np.ndarray


@dataclass(frozen=True, slots=True)
class _Inputs:
    """Everything a target window is computed from (read from the database, not yet computed).

    Attributes:
        edges_us: bucket edges of the window (epoch microseconds, first and last clipped).
        readings: the energy series' readings deciding the window.
        until_us: power samples are held at most until this instant.
        exog: exogenous readings, None when the asset lists none.
        future_steps: intervals after the window for which exogenous values were read.
        rules: the series' meter rules (modulus, power limit, replacements), as the energy report applies them.
    """

    grid: _Grid
    edges_us: np.ndarray
    readings: WindowReadings
    until_us: int
    exog: list[_ExogReadings] | None
    future_steps: int
    rules: CounterRules | None = None


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :meth:`ForecastService.train`.

    Attributes:
        manifest: the stored model.
        promoted: whether it became the asset's champion.
        reason: why it was (or was not) promoted.
        backtest: the champion/challenger backtest, or ``None`` when too little history for one.
        previous_champion: model id of the champion before, if any.
    """

    manifest: ModelManifest
    promoted: bool
    reason: str
    backtest: BacktestRecord | None
    previous_champion: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class ForecastService:
    """Use cases around forecasting one asset.

    Args:
        repo: storage.
        registry: model artifacts in ``MODELS_DIR``.
        max_hold: longest hold of one power sample (see the energy service).
        server: the served models (a new one over ``registry`` when omitted; loaded on creation).
        backtests: where backtests are stored (``MODELS_DIR/../backtests`` sibling when omitted).
        cache: served forecasts by the key of everything they are computed from
            (:mod:`digitaltwin.services.forecast_cache`); None computes every forecast.
    """

    def __init__(
        self,
        repo: Repository,
        registry: ModelRegistry,
        *,
        max_hold: timedelta,
        server: ModelServer | None = None,
        backtests: BacktestStore | None = None,
        cache: ForecastCache[ForecastResult] | None = None,
    ) -> None:
        self.repo = repo
        self.cache = cache
        self.registry = registry
        self.max_hold = max_hold
        self.server = server or ModelServer(registry)
        if server is None:
            self.server.reload()
        self.backtests = backtests or BacktestStore(registry.models_dir.parent / "backtests")

    # ------------------------------------------------------------------ data
    def _grid(self, asset_id: str) -> _Grid:
        asset = self.repo.get_asset(asset_id)
        site = self.repo.get_site(asset.site_id)
        check_site_country(site)  # a stored country unknown to `holidays`: 422 naming country, not a 500 in fit
        info = pick_energy_series(self.repo, asset_id)
        extent = self.repo.series_extent(info.id)
        if extent is None:
            raise NotFoundError(f"asset {asset_id!r} has no readings", field="asset_id")
        interval = info.interval_seconds
        if not interval and info.kind is SeriesKind.INTERVAL:
            # no declared length: the spacing of its latest readings, as the energy rules infer it
            interval = self.repo.recent_spacing_seconds(info.id) or 0
        hourly = (interval or 0) >= 3600
        return _Grid(asset, site, info, timedelta(hours=1) if hourly else timedelta(minutes=15), extent)

    def target(
        self, asset_id: str, *, start: datetime | None = None, end: datetime | None = None, future_steps: int = 0
    ) -> Target:
        """The asset's energy per interval over ``[start, end)`` (default: all stored data).

        The values are those of :func:`digitaltwin.services.energy.energy_report` over the same
        range (15-minute or hourly buckets), NaN where it has none.

        Args:
            future_steps: intervals after the data for which exogenous values are also read.

        Raises:
            NotFoundError: unknown asset, or no energy-carrying readings.
        """
        return self._target(self._inputs(self._grid(asset_id), start=start, end=end, future_steps=future_steps))

    def _inputs(
        self, grid: _Grid, *, start: datetime | None = None, end: datetime | None = None, future_steps: int = 0
    ) -> _Inputs:
        """Read what the target over ``[start, end)`` (clipped to the stored data) is computed from.

        The target holds whole intervals of a fixed grid only: 15 minutes from the epoch, or hours
        in the phase of the meter's own intervals (:func:`_grid_phase_us`: UTC hours, or the
        half hours past UTC that meters at a site of UTC+05:30 report as local hours). The first
        interval starts at or after ``start`` and the first reading, the last one ends at or before
        ``end`` and the instant the data covers (see :func:`_covered_until_us`). A partial interval
        at either end would read as a drop in load; the interval in progress is forecast instead.
        """
        step_us = int(grid.step.total_seconds() * 1_000_000)
        first, last = grid.extent
        phase_us = _grid_phase_us(grid.info, last, step_us)
        lo_us = to_epoch_us(max(start, first) if start else first) - phase_us
        first_us = -(-lo_us // step_us) * step_us + phase_us
        if end is not None and end <= last:
            # the data goes on after the range, so every interval before ``end`` is covered
            hi_us = (to_epoch_us(end) - phase_us) // step_us * step_us + phase_us
            readings = read_window(self.repo, grid.info, from_epoch_us(first_us), from_epoch_us(max(hi_us, first_us)))
        else:
            readings = read_window(self.repo, grid.info, from_epoch_us(first_us), last + timedelta(microseconds=1))
            covered_us = _covered_until_us(grid.info, readings, last)
            hi_us = min(covered_us, to_epoch_us(end)) if end is not None else covered_us
            hi_us = (hi_us - phase_us) // step_us * step_us + phase_us
        if hi_us <= first_us:
            raise NotFoundError(
                f"asset {grid.asset.id!r} has no complete {int(grid.step.total_seconds() // 60)}-minute interval "
                "of readings in the requested window",
                field="asset_id",
            )
        edges_us = np.arange(first_us, hi_us + 1, step_us, dtype=np.int64)
        exog = self._read_exog(grid.asset.attributes.get(FORECAST_EXOG), edges_us, grid.step, future_steps)
        rules = counter_rules(self.repo, grid.asset, grid.info)
        return _Inputs(grid, edges_us, readings, hold_until_us(edges_us), exog, future_steps, rules)

    def _target(self, inputs: _Inputs) -> Target:
        """Compute the target from what :meth:`_inputs` read."""
        grid = inputs.grid
        # The energy rollups give the same totals as energy_report (which reads them too); the
        # raw readings answer where they cannot (see services/energy_rollups.py).
        rolled = rollup_totals(self.repo, grid.asset, grid.info, None, inputs.edges_us, max_hold=self.max_hold,
                               until_us=inputs.until_us) if rollup_settings.enabled else None
        totals = rolled.totals if rolled is not None else bucket_totals(
            grid.info, inputs.readings, inputs.edges_us, max_hold=self.max_hold, until_us=inputs.until_us, rules=inputs.rules
        )
        energy = totals.energy_kwh
        index = pd.to_datetime(inputs.edges_us[:-1], unit="us", utc=True)
        y = pd.Series(np.where(np.isfinite(energy), energy, np.nan), index=index, dtype="float64", name=grid.asset.id)
        exog = self._exog(inputs.exog, y.index, grid.step, inputs.future_steps)
        return Target(y, grid.step, grid.site.timezone, grid.site.country, exog)

    def _read_exog(
        self, spec: Any, edges_us: np.ndarray, step: timedelta, future_steps: int
    ) -> list[_ExogReadings] | None:
        """The exogenous readings over the window's intervals extended by ``future_steps``."""
        if not spec:
            return None
        pairs = check_forecast_exog(spec)  # the rule POST/PATCH /assets applies (an older stored value too)
        # The intervals are those starting at edges_us[:-1], then future_steps more every step.
        start = from_epoch_us(int(edges_us[0]))
        end = from_epoch_us(int(edges_us[-2])) + step * (future_steps + 1)
        out: list[_ExogReadings] = []
        for source, name in pairs:
            series = self.repo.find_series(source, name)
            if series is None:
                raise NotFoundError(f"asset {source!r} has no {name} series", field=FORECAST_EXOG)
            ts, values = self.repo.series_arrays(series.id, start=start, end=end)
            out.append(_ExogReadings(name, ts, values))
        return out

    @staticmethod
    def _exog(
        readings: list[_ExogReadings] | None, index: pd.DatetimeIndex, step: timedelta, future_steps: int
    ) -> pd.DataFrame | None:
        """Exogenous columns (mean per interval) on ``index`` extended by ``future_steps``."""
        if not readings or len(index) == 0:
            return None
        full = index.append(pd.date_range(index[-1] + step, periods=future_steps, freq=step)) if future_steps else index
        columns: dict[str, np.ndarray] = {}
        step_us = int(step.total_seconds() * 1_000_000)
        phase_us = int(index[0].value // 1000) % step_us  # the target grid's offset from the epoch
        for item in readings:
            ts_us = np.round(np.asarray(item.ts_s, dtype=float) * 1e6).astype(np.int64)
            stamps = pd.to_datetime((ts_us - phase_us) // step_us * step_us + phase_us, unit="us", utc=True)
            means = pd.Series(item.values, index=stamps).groupby(level=0).mean()
            columns[item.name] = means.reindex(full).to_numpy(dtype=float)
        return pd.DataFrame(columns, index=full)

    # ----------------------------------------------------------------- train
    def train(
        self,
        asset_id: str,
        algorithm: str,
        *,
        horizon: timedelta = DAY_AHEAD_HORIZON,
        activate: bool = True,
        checkpoint: Callable[[float], None] | None = None,
    ) -> TrainResult:
        """Fit ``algorithm`` on the stored history (at most :data:`MAX_TRAINING_HISTORY`), store it, and promote it if it beats the champion.

        Champion/challenger: the challenger's algorithm and the champion's are
        backtested on the same origins (each local midnight of the last
        :data:`HOLDOUT_DAYS` days, one fit before them). Whether the new model
        becomes the champion is :func:`digitaltwin.registry.champion.decide`: when
        there is none; never when its horizon is shorter than the champion's; when
        it is the champion's algorithm and horizon trained on a window ending later
        (newer data); else when its MAE on that backtest is strictly lower.
        Otherwise it is stored and can be activated by an admin.

        One training per asset runs at a time (:meth:`ModelRegistry.training`, across the
        processes sharing ``MODELS_DIR``).

        ``checkpoint`` (a job's progress and cancellation, see :mod:`digitaltwin.jobs`) is called
        with the fraction done (0..1) between fits: the backtest's fits count for the first 80 %,
        the final fit for the rest. An exception it raises stops the training before anything
        is stored.

        Raises:
            NotFoundError: unknown asset or no readings.
            ConflictError: naming ``asset_id`` when a training of the asset is running.
            UnknownAlgorithmError, OptionalDependencyError: bad algorithm.
            InsufficientHistoryError: too little history to fit.
            ValidationError: naming ``horizon``.
        """
        name = canonical_name(algorithm)
        grid = self._grid(asset_id)
        with self.registry.training(asset_id):  # after _grid: an unknown asset is a 404, not a lock
            target = self._target(self._inputs(grid, start=grid.extent[1] - MAX_TRAINING_HISTORY))
            steps = _steps(horizon, target.step)
            record = self.registry.active(asset_id)
            champion_id = str(record["model_id"]) if record else None
            champion_algorithm = parse_model_id(champion_id)[1] if champion_id else None
            compared = [name] + ([champion_algorithm] if champion_algorithm and champion_algorithm != name else [])
            stored_backtest: BacktestRecord | None = None
            metrics: dict[str, float] | None = None
            result: BacktestResult | None = None
            last_day = target.y.index[-1].tz_convert(target.timezone).date()
            origins = daily_origins(
                target.y, timezone=target.timezone, start=last_day - timedelta(days=HOLDOUT_DAYS), end=last_day - timedelta(days=1)
            )
            if origins:
                try:
                    result = backtest(
                        target.y, algorithms=compared, origins=origins, horizon_steps=steps, timezone=target.timezone,
                        country=target.country, retrain_every=len(origins), exog=target.exog,
                        checkpoint=None if checkpoint is None else (lambda done: checkpoint(0.8 * done)),
                    )
                except InsufficientHistoryError:
                    result = None
                if result is not None and int(result.metrics.loc[name, "n"]) > 0:
                    metrics = {k: float(v) for k, v in result.metrics.loc[name].items()}
            if checkpoint is not None:
                checkpoint(0.8)
            model = make_forecaster(name)
            model.fit(target.y, horizon_steps=steps, timezone=target.timezone, country=target.country, exog=target.exog)
            if checkpoint is not None:
                checkpoint(0.95)  # the last chance to stop before the model is stored
            training_end = target.y.index[-1] + target.step
            promoted, reason = champion_rule.decide(
                champion_rule.Contender(name, steps, training_end.tz_convert("UTC").isoformat().replace("+00:00", "Z")),
                champion_id,
                self._contender(champion_id),
                None if result is None else {str(k): float(v) for k, v in result.metrics["mae"].items()},
            )
            manifest = self.registry.save(
                model,
                asset_id=asset_id,
                training_start=target.y.index[0].to_pydatetime(),
                training_end=training_end.to_pydatetime(),
                metrics=metrics,
                fingerprint=data_fingerprint(target.y),
                extra={"champion_challenger": {"promoted": promoted, "reason": reason, "previous": champion_id}},
            )
            if result is not None:
                stored_backtest = self._store_backtest(
                    result, asset_id=asset_id, target=target, steps=steps, retrain_every=len(origins),
                    purpose="champion/challenger", extra={"model_id": manifest.model_id, "promoted": promoted, "reason": reason},
                )
            if promoted and activate:
                self.registry.activate(manifest.model_id, reason=reason)
            self.server.reload()
            return TrainResult(manifest, promoted and activate, reason, stored_backtest, champion_id)

    def check(self, asset_id: str, horizon: timedelta) -> None:
        """Check, without reading the readings, what a training or backtest of the asset at ``horizon``
        needs (a job's submission: the errors come before it is queued).

        Raises:
            NotFoundError: unknown asset or no readings (naming ``asset_id``).
            ValidationError: a stored site country unknown to ``holidays`` (``country``), or ``horizon``.
        """
        _steps(horizon, self._grid(asset_id).step)

    def _contender(self, champion_id: str | None) -> champion_rule.Contender | None:
        """The champion as the champion/challenger rule sees it, or None when unreadable."""
        if champion_id is None:
            return None
        try:
            m = self.registry.manifest(champion_id)
        except RegistryError:
            return None
        return champion_rule.Contender(m.algorithm, m.horizon_steps, m.training_end)

    def activate(self, model_id: str, *, by: str | None = None) -> ActiveModel:
        """Make a stored model its asset's champion (an admin's explicit choice) and reload.

        Raises:
            ModelNotFoundError: unknown model.
            ModelIntegrityError: the model does not load (it is not activated).
        """
        self.registry.load(model_id)  # refuse to activate a model that cannot serve
        record = self.registry.activate(model_id, reason="activated by an admin", by=by)
        self.server.reload()
        return record

    # -------------------------------------------------------------- backtest
    def backtest(
        self,
        asset_id: str,
        algorithms: list[str],
        *,
        start: date,
        end: date,
        horizon: timedelta = DAY_AHEAD_HORIZON,
        retrain_every: int = 7,
        store: bool = False,
        checkpoint: Callable[[float], None] | None = None,
    ) -> tuple[BacktestResult, BacktestRecord | None]:
        """Rolling-origin backtest with one origin at each local midnight from ``start`` to ``end``.

        ``checkpoint`` is called between fits with the fraction done (see
        :func:`digitaltwin.forecasting.backtest.backtest`); an exception it raises stops the
        backtest before anything is stored.

        Returns:
            The result and, with ``store``, its stored record (with a PNG plot).

        Raises:
            ValidationError: naming ``start`` when no origin has data, ``retrain_every`` when < 1,
                or ``horizon``.
        """
        if retrain_every < 1:
            raise ValidationError("retrain_every must be >= 1", field="retrain_every")
        first_day = datetime.combine(start, datetime.min.time(), tzinfo=UTC)
        after_last_day = datetime.combine(end, datetime.min.time(), tzinfo=UTC) + timedelta(days=2)
        target = self.target(asset_id, start=first_day - MAX_TRAINING_HISTORY - timedelta(days=1), end=after_last_day + horizon)
        origins = daily_origins(target.y, timezone=target.timezone, start=start, end=end)
        if not origins:
            raise ValidationError("no origin with data between start and end", field="start")
        steps = _steps(horizon, target.step)
        result = backtest(
            target.y, algorithms=algorithms, origins=origins, horizon_steps=steps, timezone=target.timezone,
            country=target.country, retrain_every=retrain_every, exog=target.exog, checkpoint=checkpoint,
        )
        record = None
        if store:
            record = self._store_backtest(result, asset_id=asset_id, target=target, steps=steps, retrain_every=retrain_every)
        return result, record

    def _store_backtest(
        self,
        result: BacktestResult,
        *,
        asset_id: str,
        target: Target,
        steps: int,
        retrain_every: int,
        purpose: str = "backtest",
        extra: dict[str, Any] | None = None,
    ) -> BacktestRecord:
        png = backtest_png(result, title=f"{asset_id}: {purpose}, {steps} steps per origin", timezone=target.timezone)
        return self.backtests.save(
            result, asset_id=asset_id, horizon_steps=steps, interval_seconds=int(target.step.total_seconds()),
            retrain_every=retrain_every, png=png, purpose=purpose, extra=extra,
        )

    # -------------------------------------------------------------- forecast
    def forecast(
        self,
        asset_id: str,
        algorithm: str,
        *,
        horizon: timedelta = DAY_AHEAD_HORIZON,
        quantiles: Sequence[float] = (),
    ) -> ForecastResult:
        """Forecast the intervals after the last stored reading.

        ``algorithm="best"`` serves the asset's champion. Stateless algorithms
        (persistence, seasonal naive) are fitted on the request's history. The same as
        :meth:`prepare` then, unless a kept forecast answers it, :meth:`compute`.

        Raises:
            NotFoundError: no trained model of a trained algorithm (or no champion for ``best``).
            ValidationError: naming ``horizon`` when it is not a positive multiple
                of the resolution or exceeds what the model was trained for, or
                ``quantiles`` when a level is outside [0.01, 0.99].
            InsufficientHistoryError: too little recent history for the model's lags
                (``InsufficientValidDataError`` when it is all missing).
            NotCalibratedError: quantiles asked of a model without calibration.
        """
        prepared = self.prepare(asset_id, algorithm, horizon=horizon, quantiles=quantiles)
        return prepared.kept if prepared.kept is not None else self.compute(prepared)

    def prepare(
        self,
        asset_id: str,
        algorithm: str,
        *,
        horizon: timedelta = DAY_AHEAD_HORIZON,
        quantiles: Sequence[float] = (),
    ) -> PreparedForecast:
        """Read what the forecast is computed from, and the kept forecast of exactly those inputs if any.

        Cheap next to :meth:`compute` (a few statements and the window's readings): callers that
        limit how many forecasts are computed at once run this outside the limit, so a kept
        forecast never waits behind a computation. Raises what :meth:`forecast` raises about
        the model, the horizon and the asset.
        """
        grid = self._grid(asset_id)
        step = grid.step
        steps = _steps(horizon, step)
        served = self._served(asset_id, algorithm)
        if served is not None:
            model, manifest = served.model, served.manifest
            if steps > manifest.horizon_steps and model.limited_horizon:
                raise ValidationError(
                    f"horizon of {steps} steps exceeds the {manifest.horizon_steps} steps the model was trained for",
                    field="horizon",
                )
            window = step * (model.required_history() + 1)
        else:
            model, manifest = make_forecaster(algorithm), None
            required = model.required_history()
            n, spacing = holdout_plan(steps, samples_per_day(pd.Timedelta(step)))
            window = step * (2 * required + n * spacing + steps) if quantiles else step * (required + 1)
        window = max(window, timedelta(days=1) + step)  # the flat-series check reads the last 24 h
        inputs = self._inputs(grid, start=grid.extent[1] - window, future_steps=steps)
        key = kept = None
        if self.cache is not None:
            key = self._cache_key(inputs, model.name, manifest, steps, quantiles)
            kept = self.cache.get(key)
        return PreparedForecast(asset_id, inputs, model, manifest, steps, tuple(quantiles), key, kept)

    def compute(self, prepared: PreparedForecast) -> ForecastResult:
        """Compute the forecast :meth:`prepare` read the inputs of, and keep it under their key.

        Raises:
            ValidationError: naming ``quantiles`` or ``horizon`` when the model refuses them.
            InsufficientHistoryError, NotCalibratedError: as :meth:`forecast`.
        """
        inputs, model, quantiles = prepared.inputs, prepared.model, list(prepared.quantiles)
        target = self._target(inputs)
        if prepared.manifest is None:
            model.fit(target.y, horizon_steps=prepared.steps, timezone=target.timezone, country=target.country,
                      exog=target.exog, calibrate=bool(quantiles))
        try:
            result = model.forecast(target.y, steps=prepared.steps, quantiles=quantiles, exog=target.exog)
        except ValueError as exc:
            raise ValidationError(str(exc), field="quantiles" if "quantile" in str(exc) else "horizon") from exc
        answer = ForecastResult(prepared.asset_id, model.name, result, inputs.grid.step, prepared.manifest)
        if prepared.key is not None:
            self.cache.put(prepared.key, answer)  # type: ignore[union-attr]
        return answer

    def _cache_key(
        self, inputs: _Inputs, algorithm: str, manifest: ModelManifest | None, steps: int, quantiles: Sequence[float]
    ) -> bytes:
        """The key of a forecast: the model (id and artifact checksums, or the stateless algorithm),
        the request, and every input of the target and exogenous columns (see :mod:`.forecast_cache`)."""
        grid = inputs.grid
        model = (manifest.model_id, tuple(sorted(manifest.files.items()))) if manifest is not None else None
        parts: list[object] = [
            "forecast/1", grid.asset.id, algorithm, model, steps, tuple(float(q) for q in quantiles),
            grid.site.timezone, grid.site.country, grid.info.id, grid.info.kind.value, grid.info.interval_seconds,
            int(grid.step.total_seconds()), self.max_hold.total_seconds(), inputs.future_steps,
            # only held power samples read the current time (see analytics.energy.power_segments)
            inputs.until_us if grid.info.kind is SeriesKind.INSTANTANEOUS else None,
            inputs.edges_us[[0, -1]], inputs.readings.ts_s, inputs.readings.values,
            inputs.rules,  # a declared modulus, power limit or meter replacement changes the target
        ]
        for item in inputs.exog or ():
            parts += [item.name, item.ts_s, item.values]
        return forecast_key(parts)

    def served_identity(self, asset_id: str, algorithm: str) -> tuple[object, ...]:
        """What names the model a forecast of ``algorithm`` would use now: the served model's id
        and artifact checksums, or the stateless algorithm's name. In memory, no I/O.

        Raises:
            NotFoundError: as :meth:`forecast` (no trained model, no champion).
            ValidationError: an unknown algorithm.
        """
        served = self._served(asset_id, algorithm)
        if served is None:
            return ("stateless", canonical_name(algorithm))
        manifest = served.manifest
        return (manifest.model_id, tuple(sorted(manifest.files.items())))

    @staticmethod
    def identity_of(result: ForecastResult) -> tuple[object, ...]:
        """:meth:`served_identity` of the model that made ``result``."""
        if result.manifest is None:
            return ("stateless", result.algorithm)
        return (result.manifest.model_id, tuple(sorted(result.manifest.files.items())))

    def _served(self, asset_id: str, algorithm: str) -> Any:
        if algorithm.strip().lower() == BEST:
            served = self.server.champion(asset_id)
            if served is None:
                raise NotFoundError(f"asset {asset_id!r} has no trained model; train one first", field="algorithm")
            return served
        name = canonical_name(algorithm)
        served = self.server.get(asset_id, name)
        if served is None and not algorithm_class(name).stateless:
            raise NotFoundError(f"no trained {name} model for asset {asset_id!r}; train one first", field="algorithm")
        return served

    def models(self, asset_id: str | None = None) -> list[ModelManifest]:
        """Manifests of the stored models (of one asset when given)."""
        return self.registry.list(asset_id)


def _steps(horizon: timedelta, step: timedelta) -> int:
    """Steps of ``step`` in ``horizon``; ValidationError naming ``horizon`` unless a positive multiple up to :data:`MAX_HORIZON`."""
    steps = horizon / step
    if horizon <= timedelta(0) or steps != int(steps):
        raise ValidationError(f"horizon must be a positive multiple of {int(step.total_seconds() // 60)} minutes", field="horizon")
    if horizon > MAX_HORIZON:
        raise ValidationError(f"horizon longer than {MAX_HORIZON.days} days", field="horizon")
    return int(steps)


#: Offsets of an hourly meter's intervals from UTC hours that are kept as the grid's phase:
#: the quarter hours (UTC+05:30, +05:45, +09:30 ... sites whose meters report local hours).
_PHASE_UNIT_US = 15 * 60 * 1_000_000


def _grid_phase_us(info: SeriesInfo, last: datetime, step_us: int) -> int:
    """Offset (epoch microseconds, ``0 <= phase < step``) of the target grid from the epoch.

    Hourly interval meters keep the phase of their own readings (that of the latest), when it
    is a whole number of quarter hours: a meter at a site of UTC+05:30 reports local hours,
    18:30 UTC and so on, and a grid of UTC hours would split each reading over two intervals
    and halve its peaks. 15-minute grids and other series use the epoch's phase (every UTC
    offset in use is a multiple of 15 minutes).
    """
    if step_us <= _PHASE_UNIT_US or info.kind is not SeriesKind.INTERVAL:
        return 0
    phase = to_epoch_us(last) % step_us
    return phase if phase % _PHASE_UNIT_US == 0 else 0


def _covered_until_us(info: SeriesInfo, readings: WindowReadings, last: datetime) -> int:
    """The instant (epoch microseconds) up to which the stored readings give the energy.

    Power samples and counter readings give it up to the last reading (holding the last power
    sample further would invent the load of an interval still in progress); interval energy up
    to the end of the last interval (:func:`digitaltwin.analytics.energy.interval_length_s`, the
    length the energy rules give it).
    """
    last_us = to_epoch_us(last)
    if info.kind is not SeriesKind.INTERVAL:
        return last_us
    return last_us + round(interval_length_s(readings.ts_s, info.interval_seconds) * 1_000_000)

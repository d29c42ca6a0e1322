"""Fleet training: many assets trained in parallel processes (joblib) or on a Dask cluster.

Each task opens its own database engine from the :class:`Settings` and trains
one asset through :meth:`ForecastService.train`, writing its model to
``MODELS_DIR`` in the registry's native formats. Only JSON-able summaries come
back to the caller: joblib is used for *parallel processes only*, never to
persist a model. With ``DASK_SCHEDULER_ADDRESS`` set the same tasks run on that
Dask cluster (``pip install 'digitaltwin[dask]'``; the workers need the same
database and a shared ``MODELS_DIR``), which is how training scales past one machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from digitaltwin.config import Settings
from digitaltwin.services.forecasting import DAY_AHEAD_HORIZON


@dataclass(frozen=True)
class FleetOutcome:
    """Outcome of one asset's training (JSON-able).

    Attributes:
        asset_id: the asset.
        model_id: the stored model, or ``None`` on error.
        promoted: whether it became the champion.
        reason: the champion/challenger reason, or the error.
        mae: holdout MAE in kWh, when measured.
    """

    asset_id: str
    model_id: str | None
    promoted: bool
    reason: str
    mae: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_one(settings: Settings, asset_id: str, algorithm: str, horizon_seconds: float) -> FleetOutcome:
    """Train one asset in the current process (the unit of work of :func:`train_fleet`)."""
    from digitaltwin.registry.store import ModelRegistry
    from digitaltwin.services.forecasting import ForecastService
    from digitaltwin.storage.db import make_engine
    from digitaltwin.storage.repository import Repository

    engine = make_engine(settings)
    try:
        service = ForecastService(Repository(engine), ModelRegistry(settings.models_dir), max_hold=settings.power_max_hold)
        result = service.train(asset_id, algorithm, horizon=timedelta(seconds=horizon_seconds))
    except Exception as exc:  # noqa: BLE001 - reported per asset
        return FleetOutcome(asset_id, None, False, f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}")
    finally:
        engine.dispose()
    mae = result.manifest.metrics.get("mae")
    return FleetOutcome(asset_id, result.manifest.model_id, result.promoted, result.reason, mae)


def train_fleet(
    settings: Settings,
    asset_ids: list[str],
    *,
    algorithm: str,
    horizon: timedelta = DAY_AHEAD_HORIZON,
    n_jobs: int | None = None,
) -> list[FleetOutcome]:
    """Train ``algorithm`` for every asset in parallel.

    Args:
        settings: configuration each task opens its own database and registry from.
        asset_ids: assets to train.
        algorithm: algorithm name or alias.
        horizon: forecast horizon.
        n_jobs: processes (default ``FLEET_N_JOBS``); ignored on Dask.

    Returns:
        One outcome per asset, in the order given.

    Raises:
        ImportError: ``DASK_SCHEDULER_ADDRESS`` is set but ``dask.distributed`` is not installed.
    """
    seconds = horizon.total_seconds()
    if settings.dask_scheduler_address:
        from dask.distributed import Client

        with Client(settings.dask_scheduler_address) as client:
            futures = [client.submit(train_one, settings, a, algorithm, seconds, pure=False) for a in asset_ids]
            return list(client.gather(futures))
    from joblib import Parallel, delayed

    jobs = n_jobs if n_jobs is not None else settings.fleet_n_jobs
    tasks = (delayed(train_one)(settings, a, algorithm, seconds) for a in asset_ids)
    return list(Parallel(n_jobs=jobs, backend="loky")(tasks))

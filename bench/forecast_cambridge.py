"""Twelve Cambridge buildings: hourly day-ahead with observed temperature standing in for a weather forecast.

Protocol, identical for every model in the same run: each building of
datasets/cambridge_estates_2019, 24 hourly steps issued at each local (Europe/London)
midnight from 2019-10-01 to 2019-12-30, trained only on data before the origin, refitted
every 7 origins; Bedford air temperature as the exogenous series. Peer: mlforecast
LightGBM with lags 24, 48, 168, hour/day-of-week and the same temperature as a dynamic feature.

Targets: median CV(RMSE) <= 8.5 % (reference: daily naive 13.6 %, LightGBM + temperature 9.15 %),
every building within ASHRAE Guideline 14 hourly limits (CV(RMSE) <= 30 %, |NMBE| <= 10 %),
80 % intervals covering 75-85 % in every building (the pooled coverage is printed too).

Run: ``make bench-forecast``, or ``python bench/forecast_cambridge.py [--rows FILE] [BUILDING ...]``:
with ``--rows`` the per-building results are kept in FILE (CSV) and the tables cover every
building in it, so the twelve can be run in parts (each part a few minutes on a shared machine);
``--rows FILE --tables-only`` prints the tables of FILE without running anything.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_common import load_bedford_temperature, load_cambridge, timed  # noqa: E402

from digitaltwin.forecasting import backtest, daily_origins  # noqa: E402
from digitaltwin.forecasting.metrics import coverage, cv_rmse, nmbe  # noqa: E402

TZ = "Europe/London"
BUILDINGS = ["b2", "b33", "b40", "b57", "b58", "b64", "b77", "b91", "b96", "b97", "b105", "b111"]
PRODUCT = ["seasonal_naive_daily", "lightgbm", "ensemble_weighted"]


def peer(y: pd.Series, temperature: pd.DataFrame, origins: list[pd.Timestamp]) -> tuple[np.ndarray, np.ndarray]:
    import lightgbm as lgb
    from mlforecast import MLForecast

    frame = pd.DataFrame({"unique_id": y.name, "ds": y.index.tz_localize(None), "y": y.to_numpy()})
    frame["temperature"] = temperature["temperature"].reindex(y.index).to_numpy()
    preds, actual, model = [], [], None
    for i, origin in enumerate(origins):
        cut = origin.tz_convert("UTC").tz_localize(None)
        train = frame[frame["ds"] < cut]
        if model is None or i % 7 == 0:
            model = MLForecast(
                models={"lgb": lgb.LGBMRegressor(n_estimators=300, learning_rate=0.05, verbosity=-1, n_jobs=2, random_state=0)},
                freq="h", lags=[24, 48, 168], date_features=["hour", "dayofweek"],
            )
            model.fit(train, static_features=[])
        future = frame[(frame["ds"] >= cut) & (frame["ds"] < cut + pd.Timedelta(hours=24))][["unique_id", "ds", "temperature"]]
        preds.append(model.predict(24, new_df=train, X_df=future)["lgb"].to_numpy())
        actual.append(y.reindex(pd.date_range(origin, periods=24, freq="1h")).to_numpy())
    return np.concatenate(actual), np.concatenate(preds)


def main() -> None:
    parser = argparse.ArgumentParser(description="Cambridge day-ahead benchmark")
    parser.add_argument("buildings", nargs="*", metavar="BUILDING", help=f"subset of {', '.join(BUILDINGS)} (default: all)")
    parser.add_argument("--rows", type=Path, help="CSV keeping per-building results across runs")
    parser.add_argument("--tables-only", action="store_true", help="print the tables of --rows FILE, run nothing")
    args = parser.parse_args()
    unknown = sorted(set(args.buildings) - set(BUILDINGS))
    if unknown:
        parser.error(f"unknown buildings: {', '.join(unknown)}")
    if args.tables_only:
        if args.rows is None or not args.rows.exists():
            parser.error("--tables-only needs an existing --rows FILE")
        print_tables(pd.read_csv(args.rows))
        return
    temperature = load_bedford_temperature()
    rows = []
    for building in args.buildings or BUILDINGS:
        y = load_cambridge(building)
        origins = daily_origins(y, timezone=TZ, start=date(2019, 10, 1), end=date(2019, 12, 30))
        result, seconds = timed(
            lambda y=y, origins=origins: backtest(
                y, algorithms=PRODUCT, origins=origins, horizon_steps=24, timezone=TZ, country="GB", retrain_every=7, exog=temperature
            )
        )
        for name in PRODUCT:
            part = result.forecasts[result.forecasts["algorithm"] == name]
            a, p = part["actual"].to_numpy(), part["predicted"].to_numpy()
            rows.append({"building": building, "model": f"digitaltwin {name}", "cv_rmse": cv_rmse(a, p), "nmbe": nmbe(a, p),
                         "coverage": coverage(a, part["q0.1"], part["q0.9"]), "origins": len(origins) - len(result.skipped_origins),
                         **interval_counts(a, part["q0.1"], part["q0.9"])})
        try:
            (a, p), peer_seconds = timed(lambda y=y, origins=origins: peer(y, temperature, origins))
            rows.append({"building": building, "model": "peer mlforecast LightGBM", "cv_rmse": cv_rmse(a, p), "nmbe": nmbe(a, p),
                         "coverage": np.nan, "origins": len(origins), "inside": 0, "scored": 0})
        except ImportError as exc:
            print(f"peer skipped: {exc} (run in .venv-bench: make bench-forecast)")
        print(f"{building}: backtest {seconds:.0f} s", flush=True)
    frame = pd.DataFrame(rows)
    if args.rows is not None:
        if args.rows.exists():
            kept = pd.read_csv(args.rows)
            frame = pd.concat([kept[~kept["building"].isin(frame["building"])], frame], ignore_index=True)
        frame.to_csv(args.rows, index=False)
    print_tables(frame)


def print_tables(frame: pd.DataFrame) -> None:
    """CV(RMSE), NMBE and coverage per building, the summary and the best product model's line."""
    shown = [b for b in BUILDINGS if b in set(frame["building"])]
    table = frame.pivot(index="building", columns="model", values="cv_rmse").reindex(shown) * 100
    print(f"\nCambridge estates ({len(shown)} buildings), hourly day-ahead, 2019-10-01..12-30 local midnights, CV(RMSE) % per building")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    bias = frame.pivot(index="building", columns="model", values="nmbe").reindex(shown) * 100
    print("\nNMBE % per building (ASHRAE Guideline 14 hourly: |NMBE| <= 10)")
    print(bias.to_string(float_format=lambda v: f"{v:.2f}"))
    product = frame[frame["model"].str.startswith("digitaltwin")]
    cover = product.pivot(index="building", columns="model", values="coverage").reindex(shown) * 100
    print("\n80 % interval coverage % per building (target 75-85)")
    print(cover.to_string(float_format=lambda v: f"{v:.1f}"))
    summary = frame.groupby("model").agg(
        median_cv_rmse=("cv_rmse", "median"), worst_cv_rmse=("cv_rmse", "max"),
        worst_abs_nmbe=("nmbe", lambda s: s.abs().max()), coverage_min=("coverage", "min"), coverage_median=("coverage", "median"),
    ) * 100
    print("\nsummary (%): median and worst CV(RMSE), worst |NMBE|, 80 % interval coverage (min, median)")
    pooled = product.groupby("model")[["inside", "scored"]].sum()
    summary["coverage_pooled"] = 100 * pooled["inside"] / pooled["scored"]
    print(summary.to_string(float_format=lambda v: f"{v:.2f}"))
    best = summary["median_cv_rmse"].filter(like="digitaltwin").idxmin()
    ok = summary.loc[best]
    print(
        f"best product model {best} ({len(shown)} buildings): median CV(RMSE) {ok['median_cv_rmse']:.2f} % "
        f"(target <= 8.5, ratio {ok['median_cv_rmse'] / 8.5:.2f}); "
        f"worst CV(RMSE) {ok['worst_cv_rmse']:.1f} % (<= 30), worst |NMBE| {ok['worst_abs_nmbe']:.1f} % (<= 10), "
        f"coverage per building {ok['coverage_min']:.1f}..{frame[frame['model'] == best]['coverage'].max() * 100:.1f} % (75-85), "
        f"pooled {ok['coverage_pooled']:.1f} %"
    )


def interval_counts(actual: np.ndarray, low: pd.Series, high: pd.Series) -> dict[str, int]:
    """``inside``: pairs within ``[low, high]``; ``scored``: pairs with all three finite (as in ``coverage``)."""
    a, lo, hi = (np.asarray(v, dtype=float) for v in (actual, low, high))
    keep = np.isfinite(a) & np.isfinite(lo) & np.isfinite(hi)
    return {"inside": int(((a >= lo) & (a <= hi) & keep).sum()), "scored": int(keep.sum())}


if __name__ == "__main__":
    main()

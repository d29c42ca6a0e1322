"""Steel plant benchmark: day-ahead (96 x 15 min) and intra-day (1-4 steps) against a peer library.

Protocol, identical for every model in the same run: the UCI steel-plant series
(the steel dataset shipped in src/digitaltwin/demo_data), day-ahead forecasts issued at each local (Asia/Seoul) midnight
from 2018-11-05 to 2018-12-30 (56 origins), each model trained only on data before the
origin and refitted every 7 origins. Intra-day: an origin every hour of 2018-12-17..30,
leads 1 to 4 steps, one direct model per lead fitted once before the first origin, RMSE
against persistence. The peer is Nixtla mlforecast (LightGBM on lags 1-4, 96, 192, 672 and
hour/day-of-week features, recursive), fitted on exactly the same training windows.

Run: ``make bench-forecast`` (mlforecast needs pandas < 3, so it runs in .venv-bench).
Targets: best day-ahead MAE <= 10.5 kWh, CV(RMSE) <= 75 %, |NMBE| <= 5 %, better than the peer;
intra-day RMSE at least 30 % below persistence.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_common import load_steel, print_table, row, timed  # noqa: E402

from digitaltwin.forecasting import backtest, daily_origins, make_forecaster  # noqa: E402
from digitaltwin.forecasting.metrics import rmse  # noqa: E402

TZ = "Asia/Seoul"
PRODUCT = ["seasonal_naive_weekly", "xgboost", "lightgbm", "ensemble_weighted"]


def peer_day_ahead(y: pd.Series, origins: list[pd.Timestamp], retrain_every: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """mlforecast LightGBM, refitted every ``retrain_every`` origins on the data before the origin."""
    import lightgbm as lgb
    from mlforecast import MLForecast

    frame = pd.DataFrame({"unique_id": "steel", "ds": y.index.tz_convert(TZ).tz_localize(None), "y": y.to_numpy()})
    preds, actual = [], []
    model = None
    for i, origin in enumerate(origins):
        local = origin.tz_convert(TZ).tz_localize(None)
        train = frame[frame["ds"] < local]
        if i % retrain_every == 0 or model is None:
            model = MLForecast(
                models={"lgb": lgb.LGBMRegressor(n_estimators=300, learning_rate=0.05, verbosity=-1, n_jobs=2, random_state=0)},
                freq="15min",
                lags=[1, 2, 3, 4, 96, 192, 672],
                date_features=["hour", "dayofweek"],
            )
            model.fit(train, static_features=[])
        forecast = model.predict(96, new_df=train)
        preds.append(forecast["lgb"].to_numpy())
        actual.append(y.reindex(pd.date_range(origin, periods=96, freq="15min")).to_numpy())
    return np.concatenate(actual), np.concatenate(preds)


def day_ahead(y: pd.Series) -> None:
    origins = daily_origins(y, timezone=TZ, start=date(2018, 11, 5), end=date(2018, 12, 30))
    assert len(origins) == 56
    rows = []
    for name in PRODUCT:
        result, seconds = timed(
            lambda name=name: backtest(y, algorithms=[name], origins=origins, horizon_steps=96, timezone=TZ, country="KR", retrain_every=7)
        )
        f = result.forecasts
        rows.append(row(f"digitaltwin {name}", f["actual"].to_numpy(), f["predicted"].to_numpy(), seconds, f["q0.1"], f["q0.9"]))
    try:
        (actual, predicted), seconds = timed(lambda: peer_day_ahead(y, origins))
        rows.append(row("peer mlforecast LightGBM", actual, predicted, seconds))
    except ImportError as exc:
        print(f"peer skipped: {exc} (run in .venv-bench: make bench-forecast)")
    print_table(rows, "Steel plant day-ahead, 56 local midnights 2018-11-05..12-30, 96 x 15 min, refit every 7 origins")
    best = min((r for r in rows if str(r["model"]).startswith("digitaltwin")), key=lambda r: r["MAE kWh"])
    peer = next((r for r in rows if str(r["model"]).startswith("peer")), None)
    print(
        f"best product model: {best['model']}: MAE {best['MAE kWh']:.2f} kWh (target <= 10.5), "
        f"CV(RMSE) {best['CV(RMSE) %']:.1f} % (<= 75), NMBE {best['NMBE %']:.1f} % (|.| <= 5)"
        + (f"; peer MAE {peer['MAE kWh']:.2f} kWh, ratio product/peer {best['MAE kWh'] / peer['MAE kWh']:.3f}" if peer else "")
    )


def intra_day(y: pd.Series) -> None:
    start = pd.Timestamp("2018-12-17", tz=TZ).tz_convert("UTC")
    origins = list(pd.date_range(start, periods=14 * 24, freq="1h"))
    train = y[y.index < origins[0]]
    actual, persistence, product = {}, {}, {}
    for lead in range(1, 5):
        model = make_forecaster("lightgbm")
        model.fit(train, horizon_steps=lead, timezone=TZ, country="KR", calibrate=False)
        p, a, naive = [], [], []
        for origin in origins:
            history = y[y.index < origin]
            p.append(model.predict(history.iloc[-model.required_history() :], steps=lead).iloc[-1])
            a.append(y.get(origin + pd.Timedelta(minutes=15) * (lead - 1), np.nan))
            naive.append(history.iloc[-1])
        actual[lead], product[lead], persistence[lead] = np.array(a), np.array(p), np.array(naive)
    rows = []
    for lead in range(1, 5):
        r_p, r_n = rmse(actual[lead], product[lead]), rmse(actual[lead], persistence[lead])
        rows.append({"model": f"lead {lead} ({15 * lead} min)", "persistence RMSE": r_n, "lightgbm RMSE": r_p, "reduction %": 100 * (1 - r_p / r_n)})
    pooled_a = np.concatenate(list(actual.values()))
    r_p = rmse(pooled_a, np.concatenate(list(product.values())))
    r_n = rmse(pooled_a, np.concatenate(list(persistence.values())))
    rows.append({"model": "leads 1-4 pooled", "persistence RMSE": r_n, "lightgbm RMSE": r_p, "reduction %": 100 * (1 - r_p / r_n)})
    print_table(rows, "Steel plant intra-day, hourly origins 2018-12-17..30 (336), one direct LightGBM per lead")
    print(f"intra-day RMSE reduction vs persistence: {100 * (1 - r_p / r_n):.1f} % (target >= 30 %)")


if __name__ == "__main__":
    series = load_steel()
    which = sys.argv[1:] or ["day-ahead", "intra-day"]
    if "intra-day" in which:
        intra_day(series)
    if "day-ahead" in which:
        day_ahead(series)

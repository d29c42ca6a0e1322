"""PNG plot of a backtest: actual against forecast, with the 10-90 % interval."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: render to memory only

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from digitaltwin.forecasting.backtest import BacktestResult, quantile_column  # noqa: E402


def backtest_png(
    result: BacktestResult,
    *,
    title: str,
    timezone: str = "UTC",
    unit: str = "kWh",
    band: str | None = None,
    last_origins: int | None = 14,
) -> bytes:
    """Render a backtest as a PNG image.

    Args:
        result: the backtest.
        title: figure title.
        timezone: zone of the time axis (the site's).
        unit: unit label of the y axis.
        band: algorithm whose 10-90 % interval is shaded (default: the one with the lowest MAE).
        last_origins: plot only the last this many origins (``None``: all), so a long backtest stays readable.

    Returns:
        PNG bytes (an empty-axes figure when the backtest has no forecasts).
    """
    frame = result.forecasts
    if last_origins is not None and not frame.empty:
        keep = sorted(frame["origin"].unique())[-last_origins:]
        frame = frame[frame["origin"].isin(keep)]
    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=100)
    try:
        if not frame.empty:
            if band is None:
                band = str(result.metrics["mae"].astype(float).idxmin())
            first = frame[frame["algorithm"] == frame["algorithm"].iloc[0]].drop_duplicates("ts")
            ts = pd.DatetimeIndex(first["ts"]).tz_convert(timezone)
            ax.plot(ts, first["actual"], color="black", linewidth=1.2, label="actual")
            for name, part in frame.groupby("algorithm", sort=False):
                part = part.drop_duplicates("ts")
                stamps = pd.DatetimeIndex(part["ts"]).tz_convert(timezone)
                ax.plot(stamps, part["predicted"], linewidth=0.9, label=str(name))
                low, high = quantile_column(0.1), quantile_column(0.9)
                if name == band and low in part and high in part and part[low].notna().any():
                    ax.fill_between(stamps, part[low], part[high], alpha=0.25, label=f"{name} 10-90 %")
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_xlabel(f"local time ({timezone})")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        fig.autofmt_xdate()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
    finally:
        plt.close(fig)

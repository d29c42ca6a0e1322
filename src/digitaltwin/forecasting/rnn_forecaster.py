"""LSTM and GRU forecasters (PyTorch, CPU), weights stored as safetensors.

Needs the optional ``torch`` extra. The network reads the last day of the
(standardised) target through a recurrent layer, concatenates the values one
week before each target step and the origin's local time of day and day of
week (sine/cosine), and a linear head predicts all ``horizon_steps`` at once
(a direct multi-output model). Only weights go to disk (``safetensors``); the
architecture and scaling are JSON params.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from digitaltwin.forecasting.base import FitContext, Forecaster
from digitaltwin.forecasting.errors import InsufficientHistoryError
from digitaltwin.forecasting.series import samples_per_day, series_name

MODEL_FILE = "model.safetensors"
PARAMS_FILE = "model.json"
#: Steps between consecutive training windows (at most this many windows are used).
MAX_WINDOWS = 3000


class _Net(nn.Module):
    def __init__(self, cell: str, hidden: int, horizon: int) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(input_size=1, hidden_size=hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden + horizon + 4, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, horizon))

    def forward(self, seq: torch.Tensor, seasonal: torch.Tensor, clock: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(seq)
        last = (state[0] if isinstance(state, tuple) else state)[-1]
        return self.head(torch.cat([last, seasonal, clock], dim=1)) + seasonal


class RecurrentForecaster(Forecaster):
    """A recurrent network predicting the whole horizon at once; use :class:`LSTMForecaster` or :class:`GRUForecaster`.

    The head learns a correction to the weekly profile (the output adds the
    values one week earlier), which keeps a small network stable on CPU.

    Args:
        hidden: units of the recurrent layer.
        epochs: passes over the training windows.
        learning_rate: Adam step size.
        batch_size: windows per step.
        seed: random seed (training is deterministic for a given seed and thread count).
        num_threads: CPU threads for torch.
    """

    cell: ClassVar[str]
    limited_horizon: ClassVar[bool] = True
    artifact_files: ClassVar[tuple[str, ...]] = (MODEL_FILE, PARAMS_FILE)

    def __init__(
        self,
        *,
        hidden: int = 32,
        epochs: int = 15,
        learning_rate: float = 3e-3,
        batch_size: int = 64,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        super().__init__()
        self.hidden, self.epochs, self.learning_rate = hidden, epochs, learning_rate
        self.batch_size, self.seed, self.num_threads = batch_size, seed, num_threads
        self._net: _Net | None = None
        self._mean = 0.0
        self._std = 1.0

    def _lookback(self, context: FitContext) -> int:
        return samples_per_day(context.step)

    def _week(self, context: FitContext) -> int:
        return 7 * samples_per_day(context.step)

    def _required_history(self, context: FitContext) -> int:
        return max(self._lookback(context), self._week(context))

    def _inputs(self, z: np.ndarray, index: pd.DatetimeIndex, origins: np.ndarray, context: FitContext) -> tuple[torch.Tensor, ...]:
        """Tensors for origins (positions of the first target step in ``z``)."""
        h, lookback, week = context.horizon_steps, self._lookback(context), self._week(context)
        seq = np.stack([z[o - lookback : o] for o in origins])[:, :, None]
        seasonal = np.stack([z[o - week : o - week + h] for o in origins])
        local = index[origins].tz_convert(context.timezone)
        day = 2 * np.pi * (local.hour * 60 + local.minute).to_numpy() / 1440
        dow = 2 * np.pi * local.day_of_week.to_numpy() / 7
        clock = np.stack([np.sin(day), np.cos(day), np.sin(dow), np.cos(dow)], axis=1)
        return tuple(torch.as_tensor(np.nan_to_num(a), dtype=torch.float32) for a in (seq, seasonal, clock))

    def _fit(self, y: pd.Series, context: FitContext, exog: pd.DataFrame | None) -> None:
        h, week = context.horizon_steps, self._week(context)
        if h > week:
            raise ValueError(f"{self.name} predicts at most one week ({week} steps); {h} asked")
        values = y.to_numpy(dtype=float)
        self._mean = float(np.nanmean(values))
        self._std = float(np.nanstd(values)) or 1.0
        z = (values - self._mean) / self._std
        required = self._required_history(context)
        candidates = np.arange(required, len(z) - h + 1)
        complete = [o for o in candidates if not np.isnan(z[o : o + h]).any()]
        if len(complete) < 16:
            raise InsufficientHistoryError(
                available=len(y), required=required + h + 16, series=series_name(y), purpose="training history"
            )
        origins = np.asarray(complete)
        if len(origins) > MAX_WINDOWS:
            origins = origins[np.linspace(0, len(origins) - 1, MAX_WINDOWS).astype(int)]
        torch.manual_seed(self.seed)
        torch.set_num_threads(self.num_threads)
        seq, seasonal, clock = self._inputs(z, y.index, origins, context)
        target = torch.as_tensor(np.stack([z[o : o + h] for o in origins]), dtype=torch.float32)
        net = _Net(self.cell, self.hidden, h)
        optimiser = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        generator = torch.Generator().manual_seed(self.seed)
        net.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(origins), generator=generator)
            for start in range(0, len(origins), self.batch_size):
                batch = order[start : start + self.batch_size]
                optimiser.zero_grad()
                loss = nn.functional.l1_loss(net(seq[batch], seasonal[batch], clock[batch]), target[batch])
                loss.backward()
                optimiser.step()
        net.eval()
        self._net = net

    def _predict(self, history: pd.Series, steps: int, exog: pd.DataFrame | None) -> np.ndarray:
        context = self.context
        assert self._net is not None
        z = (history.to_numpy(dtype=float) - self._mean) / self._std
        week = self._week(context)
        # one slot past the end, so the origin is the first future step
        index = history.index.append(pd.DatetimeIndex([history.index[-1] + context.step]))
        padded = np.concatenate([z, np.full(max(0, context.horizon_steps - week), np.nan)])
        seq, seasonal, clock = self._inputs(padded, index, np.array([len(z)]), context)
        with torch.no_grad():
            out = self._net(seq, seasonal, clock).numpy()[0]
        return out[:steps] * self._std + self._mean

    def _to_files(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        assert self._net is not None
        params = {
            "cell": self.cell,
            "hidden": self.hidden,
            "mean": self._mean,
            "std": self._std,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
        }
        weights = {k: v.contiguous() for k, v in self._net.state_dict().items()}
        return {MODEL_FILE: save_safetensors(weights), PARAMS_FILE: json.dumps(params, sort_keys=True).encode()}, params

    @classmethod
    def _from_files(cls, files: dict[str, bytes], params: dict[str, Any], context: FitContext) -> Forecaster:
        if json.loads(files[PARAMS_FILE].decode()) != params or params.get("cell") != cls.cell:
            raise ValueError(f"{cls.name} params do not match the artifact")
        forecaster = cls(hidden=int(params["hidden"]))
        net = _Net(cls.cell, forecaster.hidden, context.horizon_steps)
        net.load_state_dict(load_safetensors(files[MODEL_FILE]))
        net.eval()
        forecaster._net = net
        forecaster._mean, forecaster._std = float(params["mean"]), float(params["std"])
        if not math.isfinite(forecaster._std) or forecaster._std == 0:
            raise ValueError(f"{cls.name} params hold an invalid scale")
        return forecaster


class LSTMForecaster(RecurrentForecaster):
    """Long short-term memory network (Hochreiter and Schmidhuber, 1997)."""

    name = "lstm"
    cell = "lstm"


class GRUForecaster(RecurrentForecaster):
    """Gated recurrent unit network (Cho et al., 2014)."""

    name = "gru"
    cell = "gru"

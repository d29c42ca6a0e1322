"""The champion/challenger rule: does a newly trained model replace its asset's champion?

The champion is the model ``algorithm=best`` serves (``active.json``). A new model
(the challenger) replaces it automatically only when nobody could be worse off:

1. there is no champion yet: ``first model of the asset``; or the champion's manifest
   cannot be read (the champion cannot serve anyway, and its horizon is unknown);
2. its horizon is *shorter* than the champion's: **never** (whatever its accuracy), since
   every forecast the champion answers up to its own horizon (the day-ahead default
   included) would then be refused; an admin may still activate it explicitly;
3. same algorithm and horizon: only when its training window ends *later* than the
   champion's (a retraining on newer data, what scheduled retraining does); the same
   window (same data, or a correction of it) keeps the champion;
4. same algorithm at another (longer) horizon: not promoted, as the backtest refits the
   same algorithm for both and cannot tell them apart;
5. otherwise the two algorithms are compared on the same backtest (same origins, the
   challenger's horizon): it replaces the champion when its MAE is strictly lower, or
   when the champion's algorithm could not be backtested.

Whatever the outcome the challenger is stored and may be activated by an admin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True, slots=True)
class Contender:
    """What the rule needs of one model.

    Attributes:
        algorithm: canonical algorithm name.
        horizon_steps: steps ahead the model was fitted for.
        training_end: end of the training window, ISO 8601 UTC (as in the manifest).
    """

    algorithm: str
    horizon_steps: int
    training_end: str


def decide(
    challenger: Contender,
    champion_id: str | None,
    champion: Contender | None,
    maes: dict[str, float] | None,
) -> tuple[bool, str]:
    """Whether ``challenger`` replaces the champion, and why (the module's rule, in that order).

    Args:
        challenger: the new model.
        champion_id: the asset's active model id, or ``None`` when it has none.
        champion: the champion's manifest data, or ``None`` when it cannot be read.
        maes: MAE (kWh) per algorithm on the champion/challenger backtest, or ``None``
            when there was too little history for one. NaN means no scored forecast.

    Returns:
        ``(promoted, reason)``; the reason is stored in the manifest and the activation record.
    """
    if champion_id is None:
        return True, "first model of the asset"
    if champion is None:
        return True, f"champion {champion_id} is unreadable"
    new_h, old_h = challenger.horizon_steps, champion.horizon_steps
    if new_h < old_h:
        return False, (
            f"horizon of {new_h} steps is shorter than champion {champion_id}'s {old_h} steps: "
            "never promoted automatically (an admin may activate it)"
        )
    same = challenger.algorithm == champion.algorithm
    if same and new_h == old_h:
        if _end(challenger.training_end) > _end(champion.training_end):
            return True, (
                f"retrained the champion's algorithm {challenger.algorithm} on newer data "
                f"(training window ends {challenger.training_end}, champion's {champion.training_end})"
            )
        return False, (
            f"same algorithm {challenger.algorithm} and horizon as champion {champion_id} without newer data "
            f"(training window ends {challenger.training_end}, champion's {champion.training_end}): champion kept"
        )
    algorithm = champion.algorithm
    if same:
        if _end(challenger.training_end) >= _end(champion.training_end):
            return True, (
                f"extends champion {champion_id}'s horizon of {old_h} steps to {new_h} with the same algorithm "
                f"{algorithm} on data as new (training window ends {challenger.training_end}, champion's {champion.training_end})"
            )
        return False, (
            f"same algorithm {algorithm} as champion {champion_id} at a longer horizon ({new_h} steps, champion's {old_h}) "
            f"on older data (training window ends {challenger.training_end}, champion's {champion.training_end}): "
            "champion kept (an admin may activate it)"
        )
    if maes is None or algorithm not in maes or challenger.algorithm not in maes:
        return True, f"champion {champion_id} could not be backtested"
    new, old = float(maes[challenger.algorithm]), float(maes[algorithm])
    if math.isnan(old) or (not math.isnan(new) and new < old):
        return True, f"MAE {new:.4g} kWh beats champion {algorithm} {old:.4g} kWh on the same backtest"
    return False, f"MAE {new:.4g} kWh does not beat champion {algorithm} {old:.4g} kWh on the same backtest"


def _end(value: str) -> pd.Timestamp:
    return pd.Timestamp(value)

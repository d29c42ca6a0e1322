"""The champion/challenger rule (digitaltwin.registry.champion), case by case."""

from __future__ import annotations

import math

from digitaltwin.registry.champion import Contender, decide

CHAMPION_ID = "m--lightgbm--20240101T000000000000Z"
CHAMPION = Contender("lightgbm", 96, "2024-04-05T00:00:00Z")


def test_first_model_is_promoted() -> None:
    assert decide(Contender("ridge", 4, "2024-04-05T00:00:00Z"), None, None, None) == (True, "first model of the asset")


def test_shorter_horizon_never_replaces_the_champion_even_when_more_accurate() -> None:
    for algorithm, maes in (("lightgbm", {"lightgbm": 1.0}), ("ridge", {"ridge": 0.1, "lightgbm": 9.0}), ("ridge", None)):
        later = Contender(algorithm, 4, "2024-05-01T00:00:00Z")  # newer data too
        promoted, reason = decide(later, CHAMPION_ID, CHAMPION, maes)
        assert not promoted, (algorithm, reason)
        assert "shorter than champion" in reason and "96" in reason and "admin" in reason


def test_same_algorithm_and_horizon_is_a_retraining_only_on_newer_data() -> None:
    promoted, reason = decide(Contender("lightgbm", 96, "2024-04-06T00:00:00Z"), CHAMPION_ID, CHAMPION, {"lightgbm": 5.0})
    assert promoted and "newer data" in reason and "2024-04-06T00:00:00Z" in reason
    promoted, reason = decide(Contender("lightgbm", 96, "2024-04-05T00:00:00Z"), CHAMPION_ID, CHAMPION, {"lightgbm": 5.0})
    assert not promoted and "without newer data" in reason
    promoted, _ = decide(Contender("lightgbm", 96, "2024-04-01T00:00:00Z"), CHAMPION_ID, CHAMPION, {"lightgbm": 5.0})
    assert not promoted


def test_same_algorithm_at_a_longer_horizon_replaces_the_champion_on_data_as_new() -> None:
    """A champion an admin activated at 1 hour is replaced by a day-ahead retraining (else stuck)."""
    promoted, reason = decide(Contender("lightgbm", 192, "2024-04-05T00:00:00Z"), CHAMPION_ID, CHAMPION, {"lightgbm": 5.0})
    assert promoted and "extends champion" in reason
    promoted, reason = decide(Contender("lightgbm", 192, "2024-04-01T00:00:00Z"), CHAMPION_ID, CHAMPION, {"lightgbm": 5.0})
    assert not promoted and "older data" in reason and "champion's 2024-04-05T00:00:00Z" in reason


def test_other_algorithms_are_compared_on_the_same_backtest() -> None:
    challenger = Contender("ridge", 96, "2024-04-05T00:00:00Z")
    assert decide(challenger, CHAMPION_ID, CHAMPION, {"ridge": 4.0, "lightgbm": 5.0})[0] is True
    promoted, reason = decide(challenger, CHAMPION_ID, CHAMPION, {"ridge": 5.0, "lightgbm": 5.0})
    assert not promoted and "does not beat champion lightgbm" in reason
    assert decide(challenger, CHAMPION_ID, CHAMPION, {"ridge": 6.0, "lightgbm": math.nan})[0] is True
    assert decide(challenger, CHAMPION_ID, CHAMPION, None) == (True, f"champion {CHAMPION_ID} could not be backtested")
    longer = Contender("ridge", 192, "2024-04-05T00:00:00Z")  # a longer horizon still serves every champion request
    assert decide(longer, CHAMPION_ID, CHAMPION, {"ridge": 4.0, "lightgbm": 5.0})[0] is True


def test_unreadable_champion_is_replaced() -> None:
    promoted, reason = decide(Contender("ridge", 4, "2024-04-05T00:00:00Z"), CHAMPION_ID, None, None)
    assert promoted and "unreadable" in reason

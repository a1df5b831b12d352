"""The Pareto front of deploy explore: a hand-made set and a brute-force reference."""

from __future__ import annotations

import random

import pytest

from deploy.explore.pareto import front

ACC_ENERGY = {"accuracy": "max", "energy": "min"}


def test_hand_made_front():
    pts = [
        {"accuracy": 0.90, "energy": 1.0},   # 0 front
        {"accuracy": 0.80, "energy": 0.5},   # 1 front (cheapest)
        {"accuracy": 0.85, "energy": 1.2},   # 2 dominated by 0
        {"accuracy": 0.90, "energy": 1.0},   # 3 duplicate of 0: kept
        {"accuracy": 0.95, "energy": None},  # 4 energy missing: never on the front
        {"accuracy": 0.70, "energy": 0.5},   # 5 dominated by 1 (same energy, less accurate)
        {"accuracy": 0.97, "energy": 3.0},   # 6 front (most accurate)
        {"accuracy": 0.97, "energy": 3.1},   # 7 dominated by 6
    ]
    assert front(pts, ACC_ENERGY) == [0, 1, 3, 6]
    # one objective: the best value(s) only
    assert front(pts, {"energy": "min"}) == [1, 5]
    assert front(pts, {"accuracy": "max"}) == [6, 7]   # 4 counts here (it has an accuracy); 6 and 7 beat it
    # three objectives: a point worse in two but best in the third joins the front
    three = [dict(p, latency=lat) for p, lat in zip(pts, [5, 5, 1, 5, 1, 5, 5, 5], strict=True)]
    assert front(three, {**ACC_ENERGY, "latency": "min"}) == [0, 1, 2, 3, 6]
    assert front([], ACC_ENERGY) == []


def _brute_force(pts, directions):
    def better_eq(a, b, k):
        return a[k] >= b[k] if directions[k] == "max" else a[k] <= b[k]

    def strictly(a, b, k):
        return a[k] > b[k] if directions[k] == "max" else a[k] < b[k]

    out = []
    for i, p in enumerate(pts):
        dominated = any(all(better_eq(q, p, k) for k in directions) and any(strictly(q, p, k) for k in directions)
                        for q in pts)
        if not dominated:
            out.append(i)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_front_equals_a_brute_force_reference(seed):
    rng = random.Random(seed)
    directions = {"accuracy": "max", "energy": "min", "memory": "min"}
    pts = [{k: float(rng.randint(0, 6)) for k in directions} for _ in range(60)]   # ties on purpose
    assert front(pts, directions) == _brute_force(pts, directions)


def test_bad_direction_is_refused():
    with pytest.raises(ValueError, match="direction"):
        front([{"a": 1.0}], {"a": "up"})

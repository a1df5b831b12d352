"""The Pareto front of explored points over objectives that are each maximised or minimised."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def front(values: Sequence[Mapping[str, float | None]], directions: Mapping[str, str]) -> list[int]:
    """Indices of the non-dominated rows of ``values`` (in input order).

    ``directions`` maps each objective to "max" or "min". A row dominates another when
    it is at least as good in every objective and better in one; rows with a missing
    objective are never on the front. Exact duplicates of a front point are all kept.
    """
    names = list(directions)
    if not names:
        raise ValueError("no objectives")
    bad = [d for d in directions.values() if d not in ("max", "min")]
    if bad:
        raise ValueError(f"direction must be 'max' or 'min', got {bad[0]!r}")
    sign = np.array([-1.0 if directions[n] == "max" else 1.0 for n in names])
    rows = [i for i, v in enumerate(values) if all(v.get(n) is not None for n in names)]
    if not rows:
        return []
    # minimisation form: (rows, objectives)
    a = np.array([[float(values[i][n]) for n in names] for i in rows]) * sign
    le = (a[:, None, :] <= a[None, :, :]).all(axis=2)   # le[j, i]: j at least as good as i everywhere
    lt = (a[:, None, :] < a[None, :, :]).any(axis=2)    # lt[j, i]: j better than i somewhere
    dominated = (le & lt).any(axis=0)
    return [rows[k] for k in np.flatnonzero(~dominated)]

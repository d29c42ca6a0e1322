"""A small sparse builder for linear and mixed-integer programs solved by HiGHS through SciPy.

Variables are added in named blocks (one index range per block); constraints are rows
``lb <= A x <= ub`` given as (column, coefficient) pairs and tagged with the constraint
family they belong to, so an infeasible problem can say which family could not hold.
:func:`scipy.optimize.milp` runs the HiGHS solver (branch and bound for integer
variables, dual simplex for the relaxations).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix


@dataclass
class LinearProgram:
    """Columns, objective, bounds and rows of one program; fill with :meth:`add` and :meth:`row`."""

    cost: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integer: list[int] = field(default_factory=list)
    _rows: list[int] = field(default_factory=list)
    _cols: list[int] = field(default_factory=list)
    _vals: list[float] = field(default_factory=list)
    row_lower: list[float] = field(default_factory=list)
    row_upper: list[float] = field(default_factory=list)
    row_family: list[str] = field(default_factory=list)

    @property
    def n_cols(self) -> int:
        return len(self.cost)

    def add(self, n: int, *, cost: float | np.ndarray = 0.0, lower: float | np.ndarray = 0.0,
            upper: float | np.ndarray = np.inf, integer: bool = False) -> np.ndarray:
        """Add ``n`` columns; returns their indices (shape ``(n,)``)."""
        start = self.n_cols
        self.cost.extend(np.broadcast_to(np.asarray(cost, dtype=float), (n,)).tolist())
        self.lower.extend(np.broadcast_to(np.asarray(lower, dtype=float), (n,)).tolist())
        self.upper.extend(np.broadcast_to(np.asarray(upper, dtype=float), (n,)).tolist())
        self.integer.extend([1 if integer else 0] * n)
        return np.arange(start, start + n)

    def row(self, terms: Iterable[tuple[int, float]], *, lower: float = -np.inf, upper: float = np.inf,
            family: str) -> int:
        """Add the row ``lower <= sum(coef * x[col]) <= upper`` of constraint ``family``; returns its index."""
        index = len(self.row_lower)
        for col, coef in terms:
            if coef != 0.0:
                self._rows.append(index)
                self._cols.append(int(col))
                self._vals.append(float(coef))
        self.row_lower.append(lower)
        self.row_upper.append(upper)
        self.row_family.append(family)
        return index

    def solve(self, *, time_limit_s: float = 10.0, mip_rel_gap: float = 1e-6) -> SolveResult:
        """Solve with HiGHS; ``x`` is None unless an optimum was found."""
        n_rows = len(self.row_lower)
        matrix = coo_matrix((self._vals, (self._rows, self._cols)), shape=(n_rows, self.n_cols)).tocsr()
        constraints = [LinearConstraint(matrix, np.array(self.row_lower), np.array(self.row_upper))] if n_rows else []
        result = milp(
            c=np.array(self.cost),
            integrality=np.array(self.integer),
            bounds=Bounds(np.array(self.lower), np.array(self.upper)),
            constraints=constraints,
            options={"time_limit": time_limit_s, "mip_rel_gap": mip_rel_gap, "presolve": True},
        )
        ok = result.status == 0 and result.x is not None
        return SolveResult(
            x=np.asarray(result.x) if ok else None,
            objective=float(result.fun) if ok else None,
            status=int(result.status),
            message=str(result.message),
        )


@dataclass(frozen=True, slots=True)
class SolveResult:
    """HiGHS's answer: ``status`` 0 optimal, 1 iteration or time limit, 2 infeasible, 3 unbounded, 4 other."""

    x: np.ndarray | None
    objective: float | None
    status: int
    message: str

    @property
    def infeasible(self) -> bool:
        return self.status == 2

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

    def solve(self, *, time_limit_s: float, mip_rel_gap: float = 1e-3) -> SolveResult:
        """Solve with HiGHS, stopping at ``time_limit_s`` seconds (wall clock) or when a mixed-integer
        program's best plan is proven within ``mip_rel_gap`` (relative) of the optimum.

        ``x`` is the optimum, or at the time limit a mixed-integer program's best feasible point (None
        if none was found, and for a linear program stopped early).
        """
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
        # At a limit only a mixed-integer program's incumbent is known to be feasible (an LP stopped
        # early holds an unfinished simplex basis).
        integers = int(sum(self.integer))
        found = result.x is not None and (result.status == 0 or (result.status == 1 and integers > 0))
        bound = result.get("mip_dual_bound")
        return SolveResult(
            x=np.asarray(result.x) if found else None,
            objective=float(result.fun) if found else None,
            status=int(result.status),
            message=str(result.message),
            dual_bound=float(bound) if bound is not None and np.isfinite(bound) else None,
            integers=integers,
        )


@dataclass(frozen=True, slots=True)
class SolveResult:
    """HiGHS's answer: ``status`` 0 optimal, 1 iteration or time limit, 2 infeasible, 3 unbounded, 4 other.

    Attributes:
        x: the optimum, or the best feasible point found before a limit stopped the search; else None.
        objective: the objective at ``x``.
        dual_bound: for a mixed-integer program, the proven lower bound of the objective (None for an LP
            or when none was proven); ``objective - dual_bound`` bounds how far ``x`` can be from the optimum.
        integers: the number of integer columns.
    """

    x: np.ndarray | None
    objective: float | None
    status: int
    message: str
    dual_bound: float | None = None
    integers: int = 0

    @property
    def infeasible(self) -> bool:
        return self.status == 2

    @property
    def optimal(self) -> bool:
        return self.status == 0 and self.x is not None

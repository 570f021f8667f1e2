"""Batched exact solution of a declared linear transfer model over many rows at once.

Between breakpoints (dose starts and ends, rate switches, output times) the model is
``dx/dt = A x + u`` with constant ``A`` and ``u``, so it is propagated exactly:

* fast path: per row, the eigen-decomposition of the core block ``A_cc`` (all states that are not
  sinks), computed once per rate version and reused for every step;
  ``z(h) = e^{λh} z0 + h φ1(λh) w`` with ``z = V⁻¹x``, ``w = V⁻¹u``, and the sinks integrate the core
  exactly: ``Δsink = K V (h φ1(λh) z0 + h² φ2(λh) w)``;
* fallback: rows whose eigenvectors are ill-conditioned (near-defective matrices) are propagated
  with the matrix exponential of the augmented matrix ``[[A, u], [0, 0]]`` (scipy's Padé scaling and
  squaring), which needs no diagonalisation.

``reference_solve`` integrates one row with scipy's Radau at tight tolerance; tests hold the batched
path to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.integrate
import scipy.linalg

from infusim.model.declare import Model, patient_sum

#: Rows whose eigenvector matrix has a condition number above this use the expm fallback.
MAX_EIGENVECTOR_CONDITION = 1e7
#: Below this |λh| the φ functions use their Taylor series (avoids cancellation).
_SERIES_BELOW = 1e-4


@dataclass(frozen=True)
class Trajectory:
    """States of every row at the output times.

    ``states`` has shape (rows, times, states); ``patient_states()`` sums each patient's rows.
    ``fallback_rows`` lists the rows solved with the matrix-exponential fallback.
    """

    model: Model
    times_h: np.ndarray
    states: np.ndarray
    fallback_rows: np.ndarray

    def patient_states(self) -> np.ndarray:
        """States summed over each patient's rows, shape (patients, times, states)."""
        return patient_sum(self.states, self.model.rows_per_patient)


def solve(model: Model, times_h: np.ndarray, method: str = "eig") -> Trajectory:
    """Propagate ``model`` exactly and return the states at ``times_h`` (h, ascending, >= 0).

    ``method`` is ``'eig'`` (eigen-decomposition with per-row expm fallback) or ``'expm'``
    (matrix exponential for every row and step).
    """
    times_h = np.asarray(times_h, dtype=float)
    if times_h.ndim != 1 or np.any(np.diff(times_h) <= 0) or times_h[0] < 0:
        raise ValueError("times_h must be ascending, unique and non-negative")
    if method not in ("eig", "expm"):
        raise ValueError("method must be 'eig' or 'expm'")
    end_h = float(times_h[-1])
    grid = np.union1d(model.breakpoints(end_h), times_h)
    n_rows, n = model.n_rows, len(model.states)
    sinks = np.array(model.sinks(), dtype=int)
    core = np.setdiff1d(np.arange(n), sinks)
    x = np.zeros((n_rows, n))
    out = np.zeros((n_rows, len(times_h), n))
    propagator = _Propagator(model, core, sinks, force_expm=method == "expm")
    out_index = {t: i for i, t in enumerate(times_h.tolist())}
    for k, t0 in enumerate(grid):
        x += model.boluses_at(t0)
        if t0 in out_index:
            out[:, out_index[t0]] = x
        if k + 1 == len(grid):
            break
        t1 = grid[k + 1]
        propagator.update(t0)
        x = propagator.step(x, model.input_rate(t0, t1), t1 - t0)
    return Trajectory(model, times_h, out, propagator.fallback_rows())


class _Propagator:
    """Holds per-row decompositions for the current rate version and advances the state."""

    def __init__(self, model: Model, core: np.ndarray, sinks: np.ndarray, force_expm: bool) -> None:
        self.model, self.core, self.sinks, self.force_expm = model, core, sinks, force_expm
        self.passed: np.ndarray | None = None
        self.matrix = np.zeros(0)
        self.expm_rows = np.zeros(model.n_rows, dtype=bool)
        self._ever_fallback = np.zeros(model.n_rows, dtype=bool)

    def fallback_rows(self) -> np.ndarray:
        return np.flatnonzero(self._ever_fallback)

    def update(self, t_h: float) -> None:
        """Recompute the decomposition of rows whose rates changed at or before ``t_h``."""
        passed = (
            np.stack([t_h >= s.time_h for s in self.model.switches], axis=1) if self.model.switches else None
        )
        if self.passed is None:
            rows = np.arange(self.model.n_rows)
        elif passed is None:
            return
        else:
            rows = np.flatnonzero(np.any(passed != self.passed, axis=1))
            if rows.size == 0:
                return
        self.passed = passed if passed is not None else np.zeros((self.model.n_rows, 0), bool)
        parameters = self.model.parameters_at(t_h)
        full = self.model.rate_matrix(parameters)
        if self.matrix.size == 0:
            self.matrix = full
        else:
            self.matrix[rows] = full[rows]
        self._decompose(rows)

    def _decompose(self, rows: np.ndarray) -> None:
        n_rows, nc = self.model.n_rows, len(self.core)
        if not hasattr(self, "eigvals"):
            self.eigvals = np.zeros((n_rows, nc), complex)
            self.vectors = np.zeros((n_rows, nc, nc), complex)
            self.inverse = np.zeros((n_rows, nc, nc), complex)
            self.sink_vectors = np.zeros((n_rows, len(self.sinks), nc), complex)
        if self.force_expm:
            self.expm_rows[rows] = True
            self._ever_fallback[rows] = True
            return
        block = self.matrix[rows][:, self.core][:, :, self.core]
        eigvals, vectors = np.linalg.eig(block)
        inverse = np.linalg.inv(vectors)
        condition = np.sqrt(_sum_squares(vectors) * _sum_squares(inverse))
        bad = ~np.isfinite(condition) | (condition > MAX_EIGENVECTOR_CONDITION)
        self.eigvals[rows], self.vectors[rows], self.inverse[rows] = eigvals, vectors, inverse
        sink_block = self.matrix[rows][:, self.sinks][:, :, self.core]
        self.sink_vectors[rows] = sink_block @ vectors
        self.expm_rows[rows] = bad
        self._ever_fallback[rows[bad]] = True

    def step(self, x: np.ndarray, u: np.ndarray, h: float) -> np.ndarray:
        """Advance all rows by ``h`` hours under constant input rate ``u`` (rows, states)."""
        if not np.any(self.expm_rows):
            return self._eig_step(x, u, h, slice(None))
        new = x.copy()
        fast = ~self.expm_rows
        if np.any(fast):
            new[fast] = self._eig_step(x[fast], u[fast], h, fast)
        rows = self.expm_rows
        new[rows] = _expm_step(self.matrix[rows], x[rows], u[rows], h)
        return new

    def _eig_step(self, x: np.ndarray, u: np.ndarray, h: float, rows: np.ndarray | slice) -> np.ndarray:
        core, sinks = self.core, self.sinks
        lam, vectors, inverse = self.eigvals[rows], self.vectors[rows], self.inverse[rows]
        z0 = np.einsum("rij,rj->ri", inverse, x[:, core])
        phi0, phi1, phi2 = _phi(lam * h)
        z1 = phi0 * z0
        integral = h * phi1 * z0
        u_core = u[:, core]
        if np.any(u_core):
            w = np.einsum("rij,rj->ri", inverse, u_core)
            z1 += h * phi1 * w
            integral += h * h * phi2 * w
        new = x.copy()
        new[:, core] = np.einsum("rij,rj->ri", vectors, z1).real
        if len(sinks):
            gained = np.einsum("rij,rj->ri", self.sink_vectors[rows], integral).real
            new[:, sinks] = x[:, sinks] + gained + u[:, sinks] * h
        return new


def _sum_squares(a: np.ndarray) -> np.ndarray:
    """Squared Frobenius norm of each matrix in a batch (rows, n, n)."""
    flat = a.reshape(a.shape[0], -1)
    return np.einsum("ij,ij->i", flat.real, flat.real) + np.einsum("ij,ij->i", flat.imag, flat.imag)


def _phi(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``e^z``, ``φ1 = (e^z - 1)/z`` and ``φ2 = (e^z - 1 - z)/z²``, accurate for small |z|."""
    small = np.abs(z) < _SERIES_BELOW
    safe = np.where(small, 1.0, z)
    ez = np.exp(z)
    expm1 = np.where(small, 0.0, np.expm1(safe) if np.isrealobj(safe) else ez - 1.0)
    phi1 = np.where(small, 1.0 + z / 2 + z * z / 6, expm1 / safe)
    phi2 = np.where(small, 0.5 + z / 6 + z * z / 24, (expm1 - safe) / (safe * safe))
    return ez, phi1, phi2


def _expm_step(matrix: np.ndarray, x: np.ndarray, u: np.ndarray, h: float) -> np.ndarray:
    """Exact step of ``dx/dt = A x + u`` for a batch via the augmented matrix exponential."""
    rows, n = x.shape
    augmented = np.zeros((rows, n + 1, n + 1))
    augmented[:, :n, :n] = matrix * h
    augmented[:, :n, n] = u * h
    propagator = scipy.linalg.expm(augmented)
    extended = np.concatenate([x, np.ones((rows, 1))], axis=1)
    return np.einsum("rij,rj->ri", propagator, extended)[:, :n]


def reference_solve(
    model: Model, times_h: np.ndarray, row: int = 0, rtol: float = 1e-10, atol_fraction: float = 1e-14
) -> np.ndarray:
    """States of one row at ``times_h`` by scipy Radau at tight tolerance, shape (times, states).

    Independent of the batched path: it uses only the declaration's right-hand side
    ``A(t) x + u(t)`` and restarts the integrator at every breakpoint.
    """
    times_h = np.asarray(times_h, dtype=float)
    grid = np.union1d(model.breakpoints(float(times_h[-1])), times_h)
    scale = max(float(model.administered(float(times_h[-1]))[row]), 1.0)
    x = np.zeros(len(model.states))
    out = np.zeros((len(times_h), len(model.states)))
    out_index = {t: i for i, t in enumerate(times_h.tolist())}
    for k, t0 in enumerate(grid):
        x = x + model.boluses_at(t0)[row]
        if t0 in out_index:
            out[out_index[t0]] = x
        if k + 1 == len(grid):
            break
        t1 = grid[k + 1]
        matrix = model.rate_matrix(model.parameters_at(t0))[row]
        u = model.input_rate(t0, t1)[row]
        solution = scipy.integrate.solve_ivp(
            lambda _t, y, a=matrix, b=u: a @ y + b,
            (t0, t1),
            x,
            method="Radau",
            jac=lambda _t, _y, a=matrix: a,
            rtol=rtol,
            atol=atol_fraction * scale,
        )
        if not solution.success:
            raise RuntimeError(f"reference solver failed on [{t0}, {t1}] h: {solution.message}")
        x = solution.y[:, -1]
    return out


def conservation_error(trajectory: Trajectory, kinds: tuple[str, ...] = ("live", "dead")) -> np.ndarray:
    """Per patient, the largest |sum of states of ``kinds`` - administered| / dose over the outputs."""
    model = trajectory.model
    columns = [i for i, s in enumerate(model.states) if s.kind in kinds]
    totals = trajectory.patient_states()[:, :, columns].sum(axis=2)
    given = np.stack(
        [patient_sum(model.administered(t), model.rows_per_patient) for t in trajectory.times_h], 1
    )
    reference = np.maximum(patient_sum(model.administered(np.inf), model.rows_per_patient), 1e-300)
    return np.max(np.abs(totals - given), axis=1) / reference

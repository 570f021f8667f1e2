"""Batched exact solution of a declared linear transfer model over many rows at once.

Between breakpoints (dose starts and ends, rate switches) the model is ``dx/dt = A x + u`` with
constant ``A`` and ``u``, so it is propagated exactly:

* the model is first reduced by exact lumping of parallel leaves (model/lumping.py): organs that
  hold cells the same way share one state, and are recovered by their inflow shares;
* fast path: per row, the eigen-decomposition of the core block ``A_cc`` (all states that are not
  sinks), computed once per rate version. Within a segment the state stays in eigen coordinates,
  ``z(t+h) = e^{λh} z + h φ1(λh) w`` with ``z = V⁻¹x``, ``w = V⁻¹u``, and the sinks integrate the
  core exactly: ``Δsink = K V (h φ1(λh) z + h² φ2(λh) w)``. The φ factors are cached per step
  length, so a daily or weekly grid costs a few multiplications per row and step. Outputs are
  ``V z`` (all states) or, with ``solve_projected``, ``W V z`` for a few weighted sums;
* fallback: patients with a row whose eigenvectors are ill-conditioned (near-defective matrices)
  are recomputed with the matrix exponential of the augmented matrix ``[[A, u], [0, 0]]`` (scipy's
  Padé scaling and squaring), which needs no diagonalisation.

``reference_solve`` integrates one row with scipy's Radau at tight tolerance; tests hold the batched
path to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.integrate
import scipy.linalg

from infusim.model.declare import Model, patient_sum
from infusim.model.lumping import lump

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

    ``method`` is ``'eig'`` (lumping, eigen-decomposition, expm fallback per patient) or ``'expm'``
    (matrix exponential of the full model for every row and step).
    """
    times_h = _check_times(times_h)
    if method not in ("eig", "expm"):
        raise ValueError("method must be 'eig' or 'expm'")
    if method == "expm":
        return Trajectory(model, times_h, _expm_solve(model, times_h), np.arange(model.n_rows))
    lumping = lump(model)
    reduced, bad = _eigen_solve(lumping.reduced, times_h, None)
    states = lumping.expand(reduced)
    rows = _redo_with_expm(model, times_h, bad, states, None)
    return Trajectory(model, times_h, states, rows)


def solve_projected(model: Model, times_h: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sums of states at ``times_h``: ``weights`` (m, states) -> (rows, times, m).

    Same answer as ``solve(...).states @ weights.T`` at a fraction of the cost when m is small
    (the signals of a virtual trial).
    """
    times_h = _check_times(times_h)
    weights = np.asarray(weights, dtype=float)
    lumping = lump(model)
    reduced = np.zeros((model.n_rows, weights.shape[0], len(lumping.reduced.states)))
    for i, j in enumerate(lumping.position):
        reduced[:, :, j] += weights[None, :, i] * lumping.share[:, i, None]
    values, bad = _eigen_solve(lumping.reduced, times_h, reduced)
    _redo_with_expm(model, times_h, bad, values, weights)
    return values


def _check_times(times_h: np.ndarray) -> np.ndarray:
    times_h = np.asarray(times_h, dtype=float)
    if times_h.ndim != 1 or np.any(np.diff(times_h) <= 0) or times_h[0] < 0:
        raise ValueError("times_h must be ascending, unique and non-negative")
    return times_h


def _redo_with_expm(
    model: Model, times_h: np.ndarray, bad: np.ndarray, out: np.ndarray, weights: np.ndarray | None
) -> np.ndarray:
    """Recompute, in place, the patients owning ``bad`` rows with the expm path; their rows."""
    if not bad.any():
        return np.zeros(0, dtype=int)
    k = model.rows_per_patient
    patients = np.unique(np.flatnonzero(bad) // k)
    rows = (patients[:, None] * k + np.arange(k)).reshape(-1)
    states = _expm_solve(model.take_patients(patients), times_h)
    out[rows] = states if weights is None else states @ weights.T
    return rows


def _eigen_solve(
    model: Model, times_h: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (rows, times, states or m) by the eigen path, and the rows that need the fallback."""
    end_h = float(times_h[-1])
    breaks = model.breakpoints(end_h)
    grid = np.union1d(breaks, times_h)
    n_rows, n = model.n_rows, len(model.states)
    sinks = np.array(model.sinks(), dtype=int)
    core = np.setdiff1d(np.arange(n), sinks)
    if weights is None:
        weights = np.broadcast_to(np.eye(n), (n_rows, n, n))
    out = np.zeros((n_rows, len(times_h), weights.shape[1]))
    out_index = {t: i for i, t in enumerate(times_h.tolist())}
    breaks_set = set(breaks.tolist())
    basis = _EigenBasis(model, core, sinks)
    track_sinks = len(sinks) > 0 and bool(np.any(weights[:, :, sinks]))
    x = np.zeros((n_rows, n))
    z = w = sink = sink_input = view = sink_view = None
    for k, t0 in enumerate(grid):
        if k == 0 or t0 in breaks_set:
            if z is not None:
                x[:, core] = np.einsum("rij,rj->ri", basis.vectors, z).real
                x[:, sinks] = sink
            x += model.boluses_at(t0)
            basis.update(t0)
            segment_end = breaks[np.searchsorted(breaks, t0, side="right")] if t0 < breaks[-1] else t0
            u = model.input_rate(t0, segment_end)
            z = np.einsum("rij,rj->ri", basis.inverse, x[:, core])
            w = np.einsum("rij,rj->ri", basis.inverse, u[:, core]) if np.any(u[:, core]) else None
            sink, sink_input = x[:, sinks].copy(), u[:, sinks]
            view = weights[:, :, core] @ basis.vectors
            sink_view = weights[:, :, sinks]
        if t0 in out_index:
            values = np.einsum("rmj,rj->rm", view, z).real
            if track_sinks:
                values += np.einsum("rms,rs->rm", sink_view, sink)
            out[:, out_index[t0]] = values
        if k + 1 == len(grid):
            break
        h = grid[k + 1] - t0
        growth, phi1, phi2 = basis.phi(h)
        if track_sinks:
            integral = h * phi1 * z if w is None else h * phi1 * z + h * h * phi2 * w
            sink = sink + np.einsum("rsj,rj->rs", basis.sink_vectors, integral).real + sink_input * h
        z = growth * z if w is None else growth * z + h * phi1 * w
    return out, basis.ever_bad


class _EigenBasis:
    """Per-row eigen-decomposition of the core block for the rates in force, with cached φ."""

    def __init__(self, model: Model, core: np.ndarray, sinks: np.ndarray) -> None:
        self.model, self.core, self.sinks = model, core, sinks
        n_rows, nc = model.n_rows, len(core)
        self.passed: np.ndarray | None = None
        self.eigvals = np.zeros((n_rows, nc), complex)
        self.vectors = np.zeros((n_rows, nc, nc), complex)
        self.inverse = np.zeros((n_rows, nc, nc), complex)
        self.sink_vectors = np.zeros((n_rows, len(sinks), nc), complex)
        self.ever_bad = np.zeros(n_rows, dtype=bool)
        self._phi: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def update(self, t_h: float) -> None:
        """Recompute the decomposition of rows whose rates changed at or before ``t_h``."""
        switches = self.model.switches
        passed = (
            np.stack([t_h >= s.time_h for s in switches], axis=1)
            if switches
            else np.zeros((self.model.n_rows, 0), bool)
        )
        if self.passed is None:
            rows = np.arange(self.model.n_rows)
        else:
            rows = np.flatnonzero(np.any(passed != self.passed, axis=1))
        self.passed = passed
        if rows.size == 0:
            return
        self._phi.clear()
        matrix = self.model.rate_matrix(self.model.parameters_at(t_h))
        eigvals, vectors = np.linalg.eig(matrix[np.ix_(rows, self.core, self.core)])
        inverse = _inverse(vectors)
        condition = np.sqrt(_sum_squares(vectors) * _sum_squares(inverse))
        bad = ~np.isfinite(condition) | (condition > MAX_EIGENVECTOR_CONDITION)
        inverse[bad] = 0.0
        sink_vectors = matrix[np.ix_(rows, self.sinks, self.core)] @ vectors
        if rows.size == self.model.n_rows:
            self.eigvals, self.vectors, self.inverse, self.sink_vectors = (
                eigvals,
                vectors,
                inverse,
                sink_vectors,
            )
        else:
            self.eigvals[rows], self.vectors[rows], self.inverse[rows] = eigvals, vectors, inverse
            self.sink_vectors[rows] = sink_vectors
        self.ever_bad[rows[bad]] = True

    def phi(self, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``e^{λh}``, ``φ1(λh)``, ``φ2(λh)`` per row and eigenvalue, cached per step length."""
        if h not in self._phi:
            self._phi[h] = _phi(self.eigvals * h)
        return self._phi[h]


def _inverse(vectors: np.ndarray) -> np.ndarray:
    """Batched inverse; a singular matrix gives a non-finite inverse (and the fallback), not an error."""
    try:
        return np.linalg.inv(vectors)
    except np.linalg.LinAlgError:
        out = np.full_like(vectors, np.nan)
        for i, matrix in enumerate(vectors):
            try:
                out[i] = np.linalg.inv(matrix)
            except np.linalg.LinAlgError:
                continue
        return out


def _expm_solve(model: Model, times_h: np.ndarray) -> np.ndarray:
    """States (rows, times, states) with the augmented matrix exponential at every step."""
    grid = np.union1d(model.breakpoints(float(times_h[-1])), times_h)
    x = np.zeros((model.n_rows, len(model.states)))
    out = np.zeros((model.n_rows, len(times_h), len(model.states)))
    out_index = {t: i for i, t in enumerate(times_h.tolist())}
    for k, t0 in enumerate(grid):
        x += model.boluses_at(t0)
        if t0 in out_index:
            out[:, out_index[t0]] = x
        if k + 1 == len(grid):
            break
        t1 = grid[k + 1]
        matrix = model.rate_matrix(model.parameters_at(t0))
        x = _expm_step(matrix, x, model.input_rate(t0, t1), t1 - t0)
    return out


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

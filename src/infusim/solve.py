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
    """Outputs (rows, times, states or m) by the eigen path, and the rows that need the fallback.

    All rows step together over the shared grid (dose boundaries, switches common to every row,
    output times). A switch whose time differs between rows (a parameter drawn per patient) is not
    a grid point: within the step that holds it, only the rows concerned are advanced to their own
    switch time, re-decomposed and carried on, so the cost does not grow with the number of
    distinct switch times.
    """
    end_h = float(times_h[-1])
    breaks = model.breakpoints(end_h, row_switches=False)
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
    varying = [i for i, sw in enumerate(model.switches) if len(np.unique(sw.time_h)) > 1]
    own_times = np.stack([model.switches[i].time_h for i in varying], axis=1) if varying else None
    state = _Segment(basis, weights, core, sinks)
    x = np.zeros((n_rows, n))
    for k, t0 in enumerate(grid):
        if k == 0 or t0 in breaks_set:
            if k > 0:
                x[:, core] = np.einsum("rij,rj->ri", basis.vectors, state.z).real
                x[:, sinks] = state.sink
            x += model.boluses_at(t0)
            basis.update(t0)
            segment_end = breaks[np.searchsorted(breaks, t0, side="right")] if t0 < breaks[-1] else t0
            state.start(x, model.input_rate(t0, segment_end))
        if t0 in out_index:
            out[:, out_index[t0]] = state.values()
        if k + 1 == len(grid):
            break
        t1 = grid[k + 1]
        now = np.full(n_rows, t0)
        while own_times is not None:
            pending = (own_times >= t0) & (own_times < t1) & ~basis.passed[:, varying]
            rows = np.flatnonzero(pending.any(axis=1))
            if rows.size == 0:
                break
            at = np.where(pending[rows], own_times[rows], np.inf).min(axis=1)
            state.advance_rows(rows, at - now[rows])
            state.switch_rows(rows, at)
            now[rows] = at
        late = np.flatnonzero(now > t0)
        if late.size == 0:
            state.advance(t1 - t0)
        else:
            early = np.flatnonzero(now == t0)
            state.advance_rows(early, np.full(early.size, t1 - t0))
            state.advance_rows(late, t1 - now[late])
    return out, basis.ever_bad


class _Segment:
    """The solution in eigen coordinates of the rates in force: ``z`` per row, the sinks, the input."""

    def __init__(self, basis: _EigenBasis, weights: np.ndarray, core: np.ndarray, sinks: np.ndarray) -> None:
        self.basis, self.weights, self.core, self.sinks = basis, weights, core, sinks
        self.track_sinks = len(sinks) > 0 and bool(np.any(weights[:, :, sinks]))

    def start(self, x: np.ndarray, u: np.ndarray) -> None:
        """Project the states ``x`` and inputs ``u`` (rows, states) on the current basis."""
        b, core = self.basis, self.core
        self.u = u
        self.z = np.einsum("rij,rj->ri", b.inverse, x[:, core])
        self.w = np.einsum("rij,rj->ri", b.inverse, u[:, core]) if np.any(u[:, core]) else None
        self.sink, self.sink_input = x[:, self.sinks].copy(), u[:, self.sinks]
        self.view = self.weights[:, :, core] @ b.vectors
        self.sink_view = self.weights[:, :, self.sinks]

    def values(self) -> np.ndarray:
        """The weighted sums (rows, m) now."""
        values = np.einsum("rmj,rj->rm", self.view, self.z).real
        if self.track_sinks:
            values += np.einsum("rms,rs->rm", self.sink_view, self.sink)
        return values

    def advance(self, h: float) -> None:
        """Every row forward by ``h`` hours (φ factors cached per step length)."""
        growth, phi1, phi2 = self.basis.phi(h)
        z, w = self.z, self.w
        if self.track_sinks:
            integral = h * phi1 * z if w is None else h * phi1 * z + h * h * phi2 * w
            self.sink = self.sink + np.einsum("rsj,rj->rs", self.basis.sink_vectors, integral).real
            self.sink += self.sink_input * h
        self.z = growth * z if w is None else growth * z + h * phi1 * w

    def advance_rows(self, rows: np.ndarray, h: np.ndarray) -> None:
        """Rows ``rows`` forward by their own ``h`` (hours, one per row)."""
        if rows.size == 0:
            return
        hh = h[:, None]
        growth, phi1, phi2 = _phi(self.basis.eigvals[rows] * hh)
        z = self.z[rows]
        w = None if self.w is None else self.w[rows]
        if self.track_sinks:
            integral = hh * phi1 * z if w is None else hh * phi1 * z + hh * hh * phi2 * w
            self.sink[rows] += np.einsum("rsj,rj->rs", self.basis.sink_vectors[rows], integral).real
            self.sink[rows] += self.sink_input[rows] * hh
        self.z[rows] = growth * z if w is None else growth * z + hh * phi1 * w

    def switch_rows(self, rows: np.ndarray, at_h: np.ndarray) -> None:
        """Rows ``rows`` reach their own switch at ``at_h``: new rates, same cells."""
        b, core = self.basis, self.core
        x_core = np.einsum("rij,rj->ri", b.vectors[rows], self.z[rows]).real
        b.update_rows(rows, at_h)
        self.z[rows] = np.einsum("rij,rj->ri", b.inverse[rows], x_core)
        if self.w is not None:
            self.w[rows] = np.einsum("rij,rj->ri", b.inverse[rows], self.u[rows][:, core])
        self.view[rows] = self.weights[rows][:, :, core] @ b.vectors[rows]


class _EigenBasis:
    """Per-row eigen-decomposition of the core block for the rates in force, with cached φ."""

    def __init__(self, model: Model, core: np.ndarray, sinks: np.ndarray) -> None:
        self.model, self.core, self.sinks = model, core, sinks
        n_rows, nc = model.n_rows, len(core)
        self.passed = np.zeros((n_rows, len(model.switches)), dtype=bool)
        self.started = False
        self.eigvals = np.zeros((n_rows, nc), complex)
        self.vectors = np.zeros((n_rows, nc, nc), complex)
        self.inverse = np.zeros((n_rows, nc, nc), complex)
        self.sink_vectors = np.zeros((n_rows, len(sinks), nc), complex)
        self.ever_bad = np.zeros(n_rows, dtype=bool)
        self._phi: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def update(self, t_h: float) -> None:
        """Recompute the decomposition of rows whose rates changed at or before ``t_h``."""
        switches = self.model.switches
        passed = np.stack([t_h >= s.time_h for s in switches], axis=1) if switches else self.passed
        if not self.started:
            rows = np.arange(self.model.n_rows)
            self.started = True
        else:
            rows = np.flatnonzero(np.any(passed != self.passed, axis=1))
        if rows.size:
            self.update_rows(rows, np.full(rows.size, t_h))

    def update_rows(self, rows: np.ndarray, t_h: np.ndarray) -> None:
        """Decompose the rates of ``rows``, each at its own time ``t_h`` (h)."""
        switches = self.model.switches
        if switches:
            self.passed[rows] = np.stack([t_h >= s.time_h[rows] for s in switches], axis=1)
        self._phi.clear()
        whole = rows.size == self.model.n_rows
        matrix = self.model.rate_matrix(self.model.parameters_at(t_h, None if whole else rows))
        eigvals, vectors = np.linalg.eig(matrix[:, self.core][:, :, self.core])
        inverse = _inverse(vectors)
        condition = np.sqrt(_sum_squares(vectors) * _sum_squares(inverse))
        bad = ~np.isfinite(condition) | (condition > MAX_EIGENVECTOR_CONDITION)
        inverse[bad] = 0.0
        sink_vectors = matrix[:, self.sinks][:, :, self.core] @ vectors
        if whole:
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

"""Minimum-curvature racing line (the iterated QP of Heilmeier et al., TUMFTM, re-derived).

The line is a closed chain of points ``p_i = c_i + d_i n_i`` on a uniform grid of the
centreline (arc length ``s_i``, spacing about ``step_m``): ``c_i`` the centreline point,
``n_i`` its left normal (``Track.frenet_to_xy`` conventions), ``d_i`` the lateral offset
[m], the unknowns. The objective is the sum of squared curvatures of the chain,

    minimise  sum_i kappa_i(d)^2   subject to   lo_i <= d_i <= hi_i,

with ``kappa_i`` the signed Menger curvature (inverse radius of the circle through
``p_{i-1}, p_i, p_{i+1}``), which depends on three offsets only, and ``[lo_i, hi_i]`` the
track between its edges less half the car's width and a margin.

Each iteration linearises the curvature around the current line, ``kappa ~= kappa_0 +
J (d - d_0)`` with ``J`` cyclic tridiagonal (central differences), and solves the
box-constrained quadratic problem in ``d`` exactly: a convex QP with the cyclic
pentadiagonal Hessian ``J^T J`` (plus a small Levenberg-Marquardt term ``lambda
||d - d_0||^2``, raised when a step would not lower the true objective). The QP is solved
by a primal-dual interior-point method (Mehrotra predictor-corrector); each Newton
system is banded after "folding" the ring (order 0, M-1, 1, M-2, ...: ring neighbours at
most 4 rows apart), so a banded Cholesky factorisation (numba) solves it in O(M).

This is the iterated minimum-curvature method of the TUMFTM global race trajectory
optimiser (Heilmeier et al. 2019), which re-linearises a curvature QP a few times; the
linearisation here is exact to first order in the offsets (the published one freezes the
spline's first derivatives, which on a ring would favour the inside, smaller circle).
numpy and numba only: no scipy.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from racing.errors import ConfigError

#: Half bandwidth of the folded Hessian (ring distance 2 -> at most 4 rows apart).
_BAND = 4


# --------------------------------------------------------------------------- band algebra
def _fold_order(m: int) -> np.ndarray:
    """Ring indices in folded order 0, M-1, 1, M-2, 2, ... (keeps the cyclic band narrow)."""
    r = np.arange(m)
    return np.where(r % 2 == 0, r // 2, m - 1 - r // 2)


@nb.njit(cache=True, nogil=True)
def _assemble_band(a_m, a_0, a_p, pos, diag_extra):
    """Lower band (rows of the folded order) of ``A^T A + diag(diag_extra)``.

    ``A`` is cyclic tridiagonal: row ``i`` holds ``a_m[i]`` at column ``i-1``, ``a_0[i]``
    at ``i`` and ``a_p[i]`` at ``i+1``. ``pos[i]`` is the folded row of ring index ``i``.
    Returns ``band[k, r] = H[r, r - k]`` (folded rows), ``k = 0.._BAND``.
    """
    m = a_0.shape[0]
    band = np.zeros((_BAND + 1, m))
    cols = np.empty(3, dtype=np.int64)
    vals = np.empty(3)
    for i in range(m):
        cols[0] = i - 1 if i > 0 else m - 1
        cols[1] = i
        cols[2] = i + 1 if i + 1 < m else 0
        vals[0] = a_m[i]
        vals[1] = a_0[i]
        vals[2] = a_p[i]
        for a in range(3):
            ra = pos[cols[a]]
            for b in range(3):
                rb = pos[cols[b]]
                if ra > rb or (ra == rb and a == b):
                    band[ra - rb, ra] += vals[a] * vals[b]
    for i in range(m):
        band[0, pos[i]] += diag_extra[i]
    return band


@nb.njit(cache=True, nogil=True)
def _band_cholesky_solve(band_in, rhs):
    """Solve ``H x = rhs`` for symmetric positive definite ``H`` given as its lower band
    ``band_in[k, r] = H[r, r - k]`` (half bandwidth ``band_in.shape[0] - 1``)."""
    p = band_in.shape[0] - 1
    m = band_in.shape[1]
    L = band_in.copy()
    for j in range(m):
        s = L[0, j]
        for k in range(max(0, j - p), j):
            s -= L[j - k, j] ** 2
        if s <= 0.0:
            s = 1e-300  # numerically singular: the interior-point diagonal keeps this away
        d = math.sqrt(s)
        L[0, j] = d
        for i in range(j + 1, min(j + p, m - 1) + 1):
            s = L[i - j, i]
            for k in range(max(0, i - p), j):
                s -= L[i - k, i] * L[j - k, j]
            L[i - j, i] = s / d
    y = rhs.copy()
    for i in range(m):
        s = y[i]
        for k in range(max(0, i - p), i):
            s -= L[i - k, i] * y[k]
        y[i] = s / L[0, i]
    for i in range(m - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, min(i + p, m - 1) + 1):
            s -= L[k - i, k] * y[k]
        y[i] = s / L[0, i]
    return y


class _CyclicTridiagLSQ:
    """The least-squares term ``||A x + b||^2`` with ``A`` cyclic tridiagonal."""

    def __init__(self, a_m, a_0, a_p, b):
        self.a_m, self.a_0, self.a_p, self.b = a_m, a_0, a_p, b
        m = a_0.shape[0]
        self.order = _fold_order(m)
        self.pos = np.empty(m, dtype=np.int64)
        self.pos[self.order] = np.arange(m)

    def apply(self, x):  # A x
        return self.a_m * np.roll(x, 1) + self.a_0 * x + self.a_p * np.roll(x, -1)

    def apply_t(self, y):  # A^T y
        return np.roll(self.a_p * y, 1) + self.a_0 * y + np.roll(self.a_m * y, -1)

    def solve(self, diag_extra, rhs):  # (A^T A + diag) x = rhs
        band = _assemble_band(self.a_m, self.a_0, self.a_p, self.pos, diag_extra)
        return _band_cholesky_solve(band, rhs[self.order])[self.pos]


def _box_least_squares(lsq: _CyclicTridiagLSQ, lo, hi, *, ridge: float, x_ref, tol: float = 1e-10,
                       max_iter: int = 100):
    """Minimise ``||A x + b||^2 + ridge ||x - x_ref||^2`` subject to ``lo <= x <= hi``.

    Primal-dual interior point (Mehrotra predictor-corrector) on the box; requires
    ``lo < hi``. Returns ``x``.
    """
    m = lo.shape[0]
    width = hi - lo
    x = lo + 0.5 * width
    zl = np.ones(m)
    zh = np.ones(m)
    g0 = lsq.apply_t(lsq.apply(x_ref) + lsq.b)
    scale = 1.0 + float(np.max(np.abs(g0)))

    def newton(rd, sl, sh, mu_l, mu_h, dx_aff_corr=None):
        # (H + zl/sl + zh/sh) dx = -rd + (mu_l - sl zl)/sl - (mu_h - sh zh)/sh
        D = zl / sl + zh / sh + ridge
        rhs = -rd + mu_l / sl - zl - mu_h / sh + zh
        dx = lsq.solve(D, rhs)
        dzl = (mu_l - sl * zl - zl * dx) / sl
        dzh = (mu_h - sh * zh + zh * dx) / sh
        return dx, dzl, dzh

    def max_step(v, dv):
        neg = dv < 0
        if not np.any(neg):
            return 1.0
        return float(min(1.0, np.min(-v[neg] / dv[neg])))

    for _ in range(max_iter):
        sl = x - lo
        sh = hi - x
        grad = lsq.apply_t(lsq.apply(x) + lsq.b) + ridge * (x - x_ref)
        rd = grad - zl + zh
        gap = float(sl @ zl + sh @ zh) / (2 * m)
        if np.max(np.abs(rd)) < tol * scale and gap < tol * scale:
            break
        # predictor (affine scaling)
        dx, dzl, dzh = newton(rd, sl, sh, 0.0, 0.0)
        a_aff = min(max_step(sl, dx), max_step(sh, -dx), max_step(zl, dzl), max_step(zh, dzh))
        gap_aff = float((sl + a_aff * dx) @ (zl + a_aff * dzl) + (sh - a_aff * dx) @ (zh + a_aff * dzh)) / (2 * m)
        sigma = min(1.0, (gap_aff / max(gap, 1e-300)) ** 3)
        mu = sigma * gap
        # corrector: centring plus the second-order term of the predictor
        dx, dzl, dzh = newton(rd, sl, sh, mu - dx * dzl, mu + dx * dzh)
        a = 0.99 * min(max_step(sl, dx), max_step(sh, -dx), max_step(zl, dzl), max_step(zh, dzh))
        x = x + a * dx
        zl = zl + a * dzl
        zh = zh + a * dzh
    return np.clip(x, lo, hi)


# --------------------------------------------------------------------------- the line
def _cross(ax, ay, bx, by):
    return ax * by - ay * bx


def line_grid(track, step_m: float) -> np.ndarray:
    """Centreline arc lengths [m] of a uniform closed grid with spacing close to ``step_m``."""
    if not (math.isfinite(step_m) and step_m > 0):
        raise ConfigError(f"step_m must be a positive number of metres, got {step_m!r}")
    m = int(round(track.length / step_m))
    if m < 16:
        raise ConfigError(f"step_m={step_m} is too coarse for a {track.length:.0f} m track: need at least 16 points")
    return np.arange(m) * (track.length / m)


def line_bounds(track, s, *, half_width_m: float, margin_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Allowed offsets ``(lo, hi)`` [m] of the car's centre at ``s``: each track edge less
    the car's half width and the margin. Where the track is narrower than that, both
    collapse to the middle between the edges."""
    for name, val in (("half_width_m", half_width_m), ("margin_m", margin_m)):
        if not (math.isfinite(val) and val >= 0):
            raise ConfigError(f"{name} must be a non-negative number of metres, got {val!r}")
    wl, wr = track.width_at(s)
    lo = -(wr - half_width_m - margin_m)
    hi = wl - half_width_m - margin_m
    mid = 0.5 * (wl - wr)
    narrow = lo > hi
    lo = np.where(narrow, mid, lo)
    hi = np.where(narrow, mid, hi)
    return lo, hi


def _menger3(ax, ay, bx, by, cx, cy):
    """Signed curvature of the circle through points a, b, c (in that order) [1/m]."""
    ux, uy = bx - ax, by - ay
    vx, vy = cx - bx, cy - by
    return 2.0 * _cross(ux, uy, vx, vy) / (np.hypot(ux, uy) * np.hypot(vx, vy) * np.hypot(ux + vx, uy + vy))


def menger_curvature(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Signed curvature [1/m] of a closed chain of points at each point: the inverse radius
    of the circle through the point and its two neighbours (left turns positive)."""
    return _menger3(np.roll(px, 1), np.roll(py, 1), px, py, np.roll(px, -1), np.roll(py, -1))


def _curvature_and_jacobian(px, py, nx, ny, eps: float = 1e-4):
    """Curvature of the chain and its derivatives with respect to the offsets (along their
    normals) of points ``i-1``, ``i`` and ``i+1``: three (M,) arrays (central differences)."""
    pts = [(np.roll(px, 1), np.roll(py, 1)), (px, py), (np.roll(px, -1), np.roll(py, -1))]
    nrm = [(np.roll(nx, 1), np.roll(ny, 1)), (nx, ny), (np.roll(nx, -1), np.roll(ny, -1))]
    kappa = _menger3(*pts[0], *pts[1], *pts[2])
    jac = []
    for k in range(3):
        diff = []
        for sgn in (eps, -eps):
            moved = list(pts)
            moved[k] = (pts[k][0] + sgn * nrm[k][0], pts[k][1] + sgn * nrm[k][1])
            diff.append(_menger3(*moved[0], *moved[1], *moved[2]))
        jac.append((diff[0] - diff[1]) / (2.0 * eps))
    return kappa, jac


def racing_line(track, *, half_width_m: float, margin_m: float = 0.5, step_m: float = 2.0,
                iterations: int = 30, tol_m: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-curvature racing line of a closed ``track``.

    Args:
        track: a :class:`racing.track.Track`.
        half_width_m: half the car's width [m]; the car's centre keeps this plus
            ``margin_m`` from each track edge.
        margin_m: safety margin from the edges [m].
        step_m: grid spacing along the centreline [m] (the grid has ``round(L / step_m)``
            points).
        iterations: re-linearisations (QP solves) at most; stops earlier once no offset
            moves by more than ``tol_m`` [m] in one iteration.

    Returns:
        ``(s, d)``: centreline arc length of each grid point [m] (from 0, increasing,
        below ``track.length``) and the line's lateral offset there [m], left positive.
        World points are ``track.frenet_to_xy(s, d)``.
    """
    if int(iterations) < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations}")
    s = line_grid(track, step_m)
    lo, hi = line_bounds(track, s, half_width_m=half_width_m, margin_m=margin_m)
    free = hi - lo > 1e-6
    # the interior-point method needs lo < hi: pinned points get a sliver, clipped after
    lo_q = np.where(free, lo, lo - 5e-4)
    hi_q = np.where(free, hi, hi + 5e-4)
    cx, cy, h = track.frenet_to_xy(s, 0.0)
    nx, ny = -np.sin(h), np.cos(h)

    def objective(d):
        return float(np.sum(menger_curvature(cx + d * nx, cy + d * ny) ** 2))

    d = np.clip(np.zeros_like(s), lo, hi)
    f = objective(d)
    damping = None
    for _ in range(int(iterations)):
        kappa, (a_m, a_0, a_p) = _curvature_and_jacobian(cx + d * nx, cy + d * ny, nx, ny)
        lsq = _CyclicTridiagLSQ(a_m, a_0, a_p, np.zeros_like(d))
        lsq.b = kappa - lsq.apply(d)  # linearised curvature: kappa + J (x - d)
        if damping is None:
            # Levenberg-Marquardt damping, relative to the curvature's sensitivity
            damping = 1e-6 * float(np.mean(a_0**2))
        while True:
            d_new = np.clip(_box_least_squares(lsq, lo_q, hi_q, ridge=damping, x_ref=d), lo, hi)
            f_new = objective(d_new)
            if f_new <= f or damping > 1e6 * float(np.mean(a_0**2)):
                break
            damping *= 10.0  # the linearisation overshot: a shorter step
        if f_new > f:
            break
        damping = max(damping / 3.0, 1e-12 * float(np.mean(a_0**2)))
        moved = float(np.max(np.abs(d_new - d)))
        d, f = d_new, f_new
        if moved < tol_m:
            break
    return s, d

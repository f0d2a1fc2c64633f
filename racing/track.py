"""Closed race tracks: a smooth periodic centreline with left/right widths.

A :class:`Track` is built from centreline points (any source: built-in circuits,
procedural generation, CSV files) by fitting a periodic cubic spline and resampling it
at a uniform arc-length step ``ds`` (about 1 m). Every per-sample table (position,
heading, curvature, widths) is indexed by ``i`` with ``s_i = i * ds``; the kernels in
:mod:`racing.sim` read those tables directly.

Conventions (SI units everywhere):

* ``s`` [m] arc length along the centreline from the start/finish line, in ``[0, L)``.
* ``d`` [m] signed lateral offset, positive to the **left** of the driving direction.
* ``w_left``/``w_right`` [m] distance from the centreline to the left/right track edge
  (both positive). Beyond an edge lies run-off (less grip, more rolling drag); a wall
  stands ``wall_margin_m`` beyond each edge.
* Curvature ``kappa`` [1/m] is positive in left-hand corners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numba as nb
import numpy as np

from racing.errors import TrackError

#: Default resampling step [m].
DEFAULT_DS_M = 1.0
#: Default distance from a track edge to the wall behind the run-off [m].
DEFAULT_WALL_MARGIN_M = 6.0
#: A corner is a stretch whose radius is below this [m] ...
CORNER_RADIUS_M = 200.0
#: ... and that turns the car by at least this much [rad] (15 degrees).
CORNER_MIN_TURN_RAD = math.radians(15.0)


# --------------------------------------------------------------------------- spline
def _periodic_spline_second_derivs(p: np.ndarray) -> np.ndarray:
    """Second derivatives of the uniform-parameter periodic cubic spline through ``p``.

    The system ``M[i-1] + 4 M[i] + M[i+1] = 6 (p[i+1] - 2 p[i] + p[i-1])`` is circulant,
    so it is solved exactly with an FFT in O(n log n).
    """
    n = p.shape[0]
    rhs = 6.0 * (np.roll(p, -1, axis=0) - 2.0 * p + np.roll(p, 1, axis=0))
    kernel = np.zeros(n)
    kernel[0] = 4.0
    kernel[1] = 1.0
    kernel[-1] = 1.0
    eig = np.fft.fft(kernel)  # circulant eigenvalues, all >= 2
    return np.real(np.fft.ifft(np.fft.fft(rhs, axis=0) / eig[:, None], axis=0))


def _eval_spline(p: np.ndarray, m: np.ndarray, t: np.ndarray):
    """Position, first and second derivative of the periodic spline at parameters ``t``."""
    n = p.shape[0]
    i = np.floor(t).astype(np.int64) % n
    u = (t - np.floor(t))[:, None]
    j = (i + 1) % n
    p0, p1, m0, m1 = p[i], p[j], m[i], m[j]
    a = p1 - p0 - (2.0 * m0 + m1) / 6.0
    pos = p0 + a * u + (m0 / 2.0) * u**2 + ((m1 - m0) / 6.0) * u**3
    d1 = a + m0 * u + ((m1 - m0) / 2.0) * u**2
    d2 = m0 + (m1 - m0) * u
    return pos, d1, d2


def _periodic_interp(t_new: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Linear interpolation of per-point ``values`` at periodic parameter ``t_new``."""
    n = values.shape[0]
    i = np.floor(t_new).astype(np.int64) % n
    u = t_new - np.floor(t_new)
    return values[i] * (1.0 - u) + values[(i + 1) % n] * u


# --------------------------------------------------------------------------- projection
@nb.njit(cache=True, nogil=True)
def project_packed(px, py, i0, xs, ys, off, n):
    """:func:`project_local` on samples ``off .. off + n`` of concatenated track tables."""
    if i0 < 0 or i0 >= n:
        best = 0
        best_d2 = 1e300
        for k in range(n):
            dx = px - xs[off + k]
            dy_ = py - ys[off + k]
            dd = dx * dx + dy_ * dy_
            if dd < best_d2:
                best_d2 = dd
                best = k
        i0 = best
    i = i0
    direction = 0
    u = 0.0
    for _ in range(n):
        j = i + 1
        if j == n:
            j = 0
        sx = xs[off + j] - xs[off + i]
        sy = ys[off + j] - ys[off + i]
        u = ((px - xs[off + i]) * sx + (py - ys[off + i]) * sy) / (sx * sx + sy * sy)
        if u < 0.0:
            if direction == 1:
                u = 0.0
                break
            direction = -1
            i = i - 1 if i > 0 else n - 1
        elif u >= 1.0:
            if direction == -1:
                u = 0.0
                i = j
                break
            direction = 1
            i = j
        else:
            break
    j = i + 1
    if j == n:
        j = 0
    sx = xs[off + j] - xs[off + i]
    sy = ys[off + j] - ys[off + i]
    seg = math.sqrt(sx * sx + sy * sy)
    d = (sx * (py - ys[off + i]) - sy * (px - xs[off + i])) / seg
    return i, u, d


@nb.njit(cache=True, nogil=True)
def project_local(px, py, i0, xs, ys):
    """Frenet projection of point ``(px, py)`` onto a sampled closed centreline.

    Local search: starts at segment ``i0`` (the previous projection) and walks
    forwards/backwards until the foot point lies inside a segment, so the cost is O(1)
    for a moving car. With ``i0 < 0`` it first finds the nearest sample globally.

    Returns ``(i, u, d)``: segment index, fraction along it in [0, 1), and signed lateral
    offset (positive to the left).
    """
    return project_packed(px, py, i0, xs, ys, 0, xs.shape[0])


# --------------------------------------------------------------------------- Track
@dataclass(frozen=True, eq=False)
class Track:
    """A closed circuit sampled every ``ds`` metres (see the module docstring).

    Build one with :func:`build_track` (or :func:`racing.trackio.load_track` from a spec);
    the arrays are read-only.
    """

    name: str
    x: np.ndarray  # [m] centreline x at s_i = i * ds
    y: np.ndarray  # [m]
    heading: np.ndarray  # [rad] direction of travel
    kappa: np.ndarray  # [1/m] curvature, positive turning left
    w_left: np.ndarray  # [m] centreline to left edge
    w_right: np.ndarray  # [m] centreline to right edge
    ds: float  # [m] sample spacing
    wall_margin_m: float = DEFAULT_WALL_MARGIN_M  # [m] edge to wall
    sector_starts_s: tuple[float, ...] = ()  # [m] start of each sector, first is 0
    source: str = ""  # where it came from (built-in, random:SEED, file path)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("x", "y", "heading", "kappa", "w_left", "w_right"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if not self.sector_starts_s:
            object.__setattr__(self, "sector_starts_s", (0.0, self.length / 3.0, 2.0 * self.length / 3.0))

    # ---- derived geometry
    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.x.shape[0])

    @property
    def length(self) -> float:
        """Centreline length [m]."""
        return self.n * self.ds

    @property
    def s(self) -> np.ndarray:
        """Arc length of each sample [m]."""
        return np.arange(self.n) * self.ds

    @property
    def num_sectors(self) -> int:
        return len(self.sector_starts_s)

    @cached_property
    def min_radius_m(self) -> float:
        """Smallest centreline radius [m]."""
        return float(1.0 / max(np.max(np.abs(self.kappa)), 1e-9))

    @cached_property
    def corners(self) -> list[dict]:
        """Corners: maximal stretches with radius below ``CORNER_RADIUS_M`` turning at
        least ``CORNER_MIN_TURN_RAD`` one way. A chicane counts as two corners."""
        k = self.kappa
        tight = np.abs(k) > 1.0 / CORNER_RADIUS_M
        sign = np.sign(k) * tight
        n = self.n
        if tight.all() and np.all(sign == sign[0]):  # e.g. a ring: one endless corner
            return [{"start_s": 0.0, "end_s": self.length, "apex_s": 0.0, "min_radius_m": self.min_radius_m,
                     "turn_deg": float(np.degrees(np.sum(k) * self.ds)), "direction": "left" if k[0] > 0 else "right"}]
        # rotate so that index 0 is not inside a corner run
        start = int(np.argmin(tight)) if tight.any() else 0
        order = (np.arange(n) + start) % n
        out = []
        i = 0
        while i < n:
            idx = order[i]
            if sign[idx] == 0:
                i += 1
                continue
            sg = sign[idx]
            j = i
            while j < n and sign[order[j]] == sg:
                j += 1
            run = order[i:j]
            turn = float(np.sum(k[run]) * self.ds)
            if abs(turn) >= CORNER_MIN_TURN_RAD:
                apex = run[int(np.argmax(np.abs(k[run])))]
                out.append({
                    "start_s": float(run[0] * self.ds),
                    "end_s": float(((run[-1] + 1) % n) * self.ds),
                    "apex_s": float(apex * self.ds),
                    "min_radius_m": float(1.0 / abs(k[apex])),
                    "turn_deg": float(np.degrees(turn)),
                    "direction": "left" if sg > 0 else "right",
                })
            i = j
        out.sort(key=lambda c: c["apex_s"])
        return out

    @property
    def left_edge(self) -> np.ndarray:
        """(n, 2) left edge points [m]."""
        return self.xy_at(np.arange(self.n), self.w_left)

    @property
    def right_edge(self) -> np.ndarray:
        """(n, 2) right edge points [m]."""
        return self.xy_at(np.arange(self.n), -self.w_right)

    def xy_at(self, i: np.ndarray, d: np.ndarray | float) -> np.ndarray:
        """World points at sample indices ``i`` offset laterally by ``d`` [m]."""
        i = np.asarray(i)
        h = self.heading[i]
        return np.stack([self.x[i] - np.sin(h) * d, self.y[i] + np.cos(h) * d], axis=-1)

    def frenet_to_xy(self, s, d=0.0):
        """World position and heading of Frenet coordinates ``(s, d)`` (arrays or floats).

        Returns ``(x, y, heading)``; interpolates linearly between samples.
        """
        s = np.mod(np.asarray(s, dtype=np.float64), self.length)
        f = s / self.ds
        i = np.floor(f).astype(np.int64) % self.n
        j = (i + 1) % self.n
        u = f - np.floor(f)
        cx = self.x[i] * (1 - u) + self.x[j] * u
        cy = self.y[i] * (1 - u) + self.y[j] * u
        # heading of the segment (exact for the piecewise-linear centreline used by project)
        h = np.arctan2(self.y[j] - self.y[i], self.x[j] - self.x[i])
        d = np.asarray(d, dtype=np.float64)
        return cx - np.sin(h) * d, cy + np.cos(h) * d, h

    def project(self, x: float, y: float, hint: int = -1) -> tuple[float, float, int]:
        """Frenet projection ``(s, d, i)`` of a world point; ``hint`` is a previous ``i``."""
        i, u, d = project_local(float(x), float(y), int(hint), self.x, self.y)
        return (i + u) * self.ds, d, int(i)

    def width_at(self, s) -> tuple[np.ndarray, np.ndarray]:
        """Interpolated ``(w_left, w_right)`` at arc length ``s``."""
        t = np.mod(np.asarray(s, dtype=np.float64), self.length) / self.ds
        return _periodic_interp(t, self.w_left), _periodic_interp(t, self.w_right)

    def curvature_at(self, s) -> np.ndarray:
        t = np.mod(np.asarray(s, dtype=np.float64), self.length) / self.ds
        return _periodic_interp(t, self.kappa)

    def sector_of(self, s: float) -> int:
        """Index of the sector containing ``s``."""
        return int(np.searchsorted(np.asarray(self.sector_starts_s), np.mod(s, self.length), side="right") - 1)

    def describe(self) -> dict:
        """Summary used by ``racing tracks --json``."""
        widths = self.w_left + self.w_right
        return {
            "name": self.name,
            "source": self.source,
            "length_m": round(self.length, 1),
            "corners": len(self.corners),
            "min_radius_m": round(self.min_radius_m, 1),
            "width_m": [round(float(widths.min()), 2), round(float(widths.max()), 2)],
            "sectors": self.num_sectors,
            "wall_margin_m": self.wall_margin_m,
        }


def build_track(
    name: str,
    xy,
    w_right,
    w_left,
    *,
    ds: float = DEFAULT_DS_M,
    wall_margin_m: float = DEFAULT_WALL_MARGIN_M,
    sector_fractions: tuple[float, ...] | None = None,
    source: str = "",
    smooth: int = 0,
    meta: dict | None = None,
) -> Track:
    """Fit a periodic cubic spline through closed centreline points and resample it.

    Args:
        name: display name.
        xy: (n, 2) centreline points in driving order; the loop closes from the last
            point back to the first, which must not be repeated.
        w_right, w_left: (n,) or scalar widths [m] from the centreline to each edge.
        ds: resampling step [m].
        wall_margin_m: run-off width from each edge to its wall [m].
        sector_fractions: start of each sector as a fraction of the lap (first is 0);
            default three equal sectors.
        smooth: passes of a light periodic [1, 2, 1] / 4 filter applied to the points
            before fitting (for noisy surveyed centrelines).
    """
    p = np.asarray(xy, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 4:
        raise TrackError(f"track '{name}' needs at least 4 centreline points as (n, 2), got shape {p.shape}")
    n = p.shape[0]
    wr = np.broadcast_to(np.asarray(w_right, dtype=np.float64), (n,)).copy()
    wl = np.broadcast_to(np.asarray(w_left, dtype=np.float64), (n,)).copy()
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(wr)) and np.all(np.isfinite(wl))):
        raise TrackError(f"track '{name}' has non-finite coordinates or widths")
    if np.any(wr <= 0) or np.any(wl <= 0):
        raise TrackError(f"track '{name}' has non-positive widths")
    for _ in range(smooth):
        p = 0.25 * np.roll(p, 1, axis=0) + 0.5 * p + 0.25 * np.roll(p, -1, axis=0)
    if ds <= 0:
        raise TrackError(f"ds must be positive, got {ds}")

    m = _periodic_spline_second_derivs(p)
    # dense arc-length table, then uniform resampling in arc length
    dense = 16
    t_dense = np.arange(n * dense + 1) / dense
    pos, d1, _ = _eval_spline(p, m, t_dense)
    seg = np.hypot(np.diff(pos[:, 0]), np.diff(pos[:, 1]))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = float(cum[-1])
    count = max(int(round(total / ds)), 8)
    ds_eff = total / count
    s_new = np.arange(count) * ds_eff
    t_new = np.interp(s_new, cum, t_dense)
    pos, d1, d2 = _eval_spline(p, m, t_new)
    speed = np.hypot(d1[:, 0], d1[:, 1])
    if np.any(speed < 1e-9):
        raise TrackError(f"track '{name}': centreline spline is degenerate (duplicate points?)")
    heading = np.unwrap(np.arctan2(d1[:, 1], d1[:, 0]))
    kappa = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / speed**3
    if sector_fractions is None:
        sector_fractions = (0.0, 1.0 / 3.0, 2.0 / 3.0)
    fr = tuple(float(f) for f in sector_fractions)
    if fr[0] != 0.0 or any(b <= a for a, b in zip(fr, fr[1:])) or fr[-1] >= 1.0:
        raise TrackError(f"track '{name}': sector fractions must start at 0 and increase below 1, got {fr}")
    return Track(
        name=name,
        x=pos[:, 0],
        y=pos[:, 1],
        heading=heading,
        kappa=kappa,
        w_left=_periodic_interp(t_new, wl),
        w_right=_periodic_interp(t_new, wr),
        ds=ds_eff,
        wall_margin_m=float(wall_margin_m),
        sector_starts_s=tuple(f * total for f in fr),
        source=source,
        meta=dict(meta or {}),
    )


@nb.njit(cache=True)
def _segments_intersect_count(xs, ys, skip):
    """Number of pairs of non-adjacent segments of a closed polyline that intersect.

    ``skip``: segments closer than this many indices apart (around the loop) are not
    compared (they share or nearly share a vertex).
    """
    n = xs.shape[0]
    count = 0
    for a in range(n):
        a2 = a + 1 if a + 1 < n else 0
        ax0, ay0, ax1, ay1 = xs[a], ys[a], xs[a2], ys[a2]
        minx_a = min(ax0, ax1)
        maxx_a = max(ax0, ax1)
        miny_a = min(ay0, ay1)
        maxy_a = max(ay0, ay1)
        for b in range(a + skip, n):
            if n - (b - a) < skip:
                continue
            b2 = b + 1 if b + 1 < n else 0
            bx0, by0, bx1, by1 = xs[b], ys[b], xs[b2], ys[b2]
            if max(bx0, bx1) < minx_a or min(bx0, bx1) > maxx_a or max(by0, by1) < miny_a or min(by0, by1) > maxy_a:
                continue
            d1 = (bx1 - bx0) * (ay0 - by0) - (by1 - by0) * (ax0 - bx0)
            d2 = (bx1 - bx0) * (ay1 - by0) - (by1 - by0) * (ax1 - bx0)
            d3 = (ax1 - ax0) * (by0 - ay0) - (ay1 - ay0) * (bx0 - ax0)
            d4 = (ax1 - ax0) * (by1 - ay0) - (ay1 - ay0) * (bx1 - ax0)
            if d1 * d2 < 0.0 and d3 * d4 < 0.0:
                count += 1
    return count


def polyline_self_intersects(xy: np.ndarray) -> bool:
    """True if the closed polyline ``xy`` (n, 2) crosses itself."""
    xy = np.asarray(xy, dtype=np.float64)
    return _segments_intersect_count(np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1]), 2) > 0

"""Reference lap: the physical anchor every lap time is reported against.

Two parts, both from the same :class:`racing.vehicle.VehicleParams` the simulator uses:

1. **Racing line**: the minimum-curvature line inside the track bounds less half the
   car's width and a margin (:func:`racing.raceline.racing_line`, an iterated QP as in
   the published TUMFTM method) on a grid every ``step_m`` metres of centreline.
2. **Quasi-steady-state speed profile** on that line (:func:`speed_profile`):

   * corner limit ``v^2 |kappa| = max_lateral_accel(v)`` (the first axle to saturate,
     with downforce), solved per point by bisection;
   * forward pass: rear-wheel drive ``min(P / max(v, 1 m/s), max_drive_force)``, capped
     by the rear axle's grip left over by its cornering force (friction circle, exponent
     2, as in the simulator) with the longitudinal load transfer ``m a_x h / L`` (fixed
     point, iterated); the front axle must keep its cornering force while unloaded;
     minus aero drag ``0.5 rho CdA v^2`` and rolling resistance ``Crr (m g + downforce)``;
   * backward pass: one brake pedal with the fixed ``brake_balance_front`` split, pressed
     until the front uses up the grip its cornering force leaves (friction circle, capped
     by ABS at ``abs_limit``) or the rear does where that is below the simulator's
     brake-force cap ``rear_brake_limit mu F_z`` (beyond the cap the rear force stops
     growing while the pedal goes on), with the load transfer onto the front (fixed point,
     bisection), plus drag and rolling resistance; the unloaded rear axle must keep its
     cornering force;
   * a closed track runs both passes over two laps from the slowest corner; the passes
     step ``v^2`` with Heun's method (second order in the step).

   Lap time ``= sum 2 ds / (v_i + v_{i+1})`` along the racing line.

Braking with the pedal stopped at an axle's limit keeps both axles able to corner. Not
modelled: the tyres' induced drag in corners (the cornering force tilted by the slip angle
costs ``F_y sin(a)`` along the path: +0.2 to +1.4% of lap time, measured against the
simulator by the scripted driver's plan), yaw transients, and the 10 Hz control rate; so the
reference is slightly optimistic, more so for the road car. Cornering forces split between
the axles as in steady state (``F_yf = m a_y l_r / L``).

The **standing lap** starts at 0 m/s on the racing line :data:`GRID_GAP_M` behind the
start line (pole position of :func:`racing.sim.grid_positions`) and ends at the first
crossing a lap later, as lap 1 of a standing start in the simulator.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import weakref
from dataclasses import dataclass

import numba as nb
import numpy as np

from racing.dynamics import (
    P_ABF, P_ABS, P_BB, P_EBD, P_CDA, P_CLA, P_CRR, P_FBRAKE, P_FDRIVE, P_H, P_LF, P_LR, P_M, P_MU, P_POW, P_RGR, P_RHO,
)
from racing.errors import ConfigError
from racing.raceline import racing_line
from racing.track import Track, _eval_spline, _periodic_spline_second_derivs
from racing.vehicle import G, VehicleParams, load_vehicle

__all__ = ["GRID_GAP_M", "ReferenceLap", "corner_speed", "lap_time", "racing_line", "reference_lap", "speed_profile"]

#: Distance of the pole position behind the start line [m] (``racing.sim.grid_positions``).
GRID_GAP_M = 8.0
#: Fixed-point iterations of the load transfer under acceleration.
_ACCEL_ITERS = 8
#: Bisection steps (corner speed; braking fixed point).
_BISECT = 60


# --------------------------------------------------------------------------- limits
def corner_speed(kappa, vehicle: VehicleParams) -> np.ndarray:
    """Steady cornering speed [m/s] at curvature ``kappa`` [1/m]: the root of
    ``v^2 |kappa| = vehicle.max_lateral_accel(v)`` (bisection), capped at the top speed."""
    k = np.abs(np.asarray(kappa, dtype=np.float64))
    v_top = vehicle.top_speed_mps
    lo = np.zeros_like(k)
    hi = np.full_like(k, v_top)
    ok_top = vehicle.max_lateral_accel(hi) >= hi**2 * k
    for _ in range(_BISECT):
        mid = 0.5 * (lo + hi)
        grip = vehicle.max_lateral_accel(mid) >= mid**2 * k
        lo = np.where(grip, mid, lo)
        hi = np.where(grip, hi, mid)
    return np.where(ok_top, v_top, lo)


@nb.njit(cache=True, nogil=True)
def _loads(P, v, kabs):
    """Static axle loads with downforce, steady cornering force per axle, resistance [N]."""
    m = P[P_M]
    wb = P[P_LF] + P[P_LR]
    q = 0.5 * P[P_RHO] * v * v
    down = q * P[P_CLA]
    fzf0 = m * G * P[P_LR] / wb + down * P[P_ABF]
    fzr0 = m * G * P[P_LF] / wb + down * (1.0 - P[P_ABF])
    ay = v * v * kabs
    fyf = m * ay * P[P_LR] / wb
    fyr = m * ay * P[P_LF] / wb
    resist = q * P[P_CDA] + P[P_CRR] * (m * G + down)
    return fzf0, fzr0, fyf, fyr, resist


@nb.njit(cache=True, nogil=True)
def accel_limit(P, v, kabs):
    """Largest longitudinal acceleration [m/s^2] at speed ``v`` on curvature ``|kappa|``
    (negative when drag wins); ``P`` is the vehicle's parameter row."""
    m = P[P_M]
    wb = P[P_LF] + P[P_LR]
    fzf0, fzr0, fyf, fyr, resist = _loads(P, v, kabs)
    muf = P[P_MU]
    mur = P[P_MU] * P[P_RGR]
    k_tr = m * P[P_H] / wb  # [N per m/s^2] load moved to the rear by acceleration
    fz_min = 0.05 * m * G  # the simulator's floor on an axle load
    vd = v if v > 1.0 else 1.0
    drive_cap = P[P_POW] / vd
    if drive_cap > P[P_FDRIVE]:
        drive_cap = P[P_FDRIVE]
    a = 0.0
    for _ in range(_ACCEL_ITERS):
        fzr = fzr0 + k_tr * a
        if fzr < fz_min:
            fzr = fz_min
        capr = mur * fzr
        left = capr * capr - fyr * fyr
        avail = math.sqrt(left) if left > 0.0 else 0.0
        if avail > P[P_ABS] * capr:  # traction control, as in the simulator
            avail = P[P_ABS] * capr
        a = ((drive_cap if drive_cap < avail else avail) - resist) / m
    if k_tr > 0.0:  # the unloaded front axle must still carry its cornering force
        a_front = (muf * fzf0 - fyf) / (muf * k_tr)
        if a > a_front:
            a = a_front
    return a


@nb.njit(cache=True, nogil=True)
def _brake_decel(P, d, fzf0, fzr0, fyf, fyr, resist):
    m = P[P_M]
    k_tr = m * P[P_H] / (P[P_LF] + P[P_LR])
    fz_min = 0.05 * m * G
    fzf = fzf0 + k_tr * d
    fzr = fzr0 - k_tr * d
    if fzr < fz_min:
        fzr = fz_min
    capf = P[P_MU] * fzf
    capr = P[P_MU] * P[P_RGR] * fzr
    lf = capf * capf - fyf * fyf
    lr = capr * capr - fyr * fyr
    ff = math.sqrt(lf) if lf > 0.0 else 0.0
    fr = math.sqrt(lr) if lr > 0.0 else 0.0
    if ff > P[P_ABS] * capf:  # ABS, as in the simulator
        ff = P[P_ABS] * capf
    ebd = P[P_EBD] * capr  # the simulator's brake-force distribution caps the rear here
    # one pedal, fixed balance: the pedal stops where the front axle runs out of grip, and
    # where the rear's share meets the grip its cornering leaves when that is below the
    # brake-force cap (the simulator's cap does not know about cornering: braking the rear
    # harder would take its cornering force and spin the car)
    pedal = 1.0
    bf = P[P_FBRAKE] * P[P_BB]
    br = P[P_FBRAKE] * (1.0 - P[P_BB])
    if bf > 0.0 and ff < pedal * bf:
        pedal = ff / bf
    if fr < ebd and br > 0.0 and fr < pedal * br:
        pedal = fr / br
    rear = pedal * br
    if rear > ebd:
        rear = ebd
    return (pedal * bf + rear + resist) / m


@nb.njit(cache=True, nogil=True)
def decel_limit(P, v, kabs):
    """Largest deceleration [m/s^2, >= 0] at speed ``v`` on curvature ``|kappa|``."""
    m = P[P_M]
    fzf0, fzr0, fyf, fyr, resist = _loads(P, v, kabs)
    lo = 0.0
    hi = (P[P_FBRAKE] + resist) / m
    for _ in range(_BISECT):  # the fixed point d = decel(d) (load moves to the front)
        mid = 0.5 * (lo + hi)
        if _brake_decel(P, mid, fzf0, fzr0, fyf, fyr, resist) > mid:
            lo = mid
        else:
            hi = mid
    k_tr = m * P[P_H] / (P[P_LF] + P[P_LR])
    if k_tr > 0.0:  # the unloaded rear axle must still carry its cornering force
        mur = P[P_MU] * P[P_RGR]
        d_rear = (mur * fzr0 - fyr) / (mur * k_tr)
        if lo > d_rear:
            lo = d_rear if d_rear > 0.0 else 0.0
    return lo


@nb.njit(cache=True, nogil=True)
def _forward(v, kabs, ds, P, start, count):
    """Forward (accelerating) pass in place: ``v[j] = min(v[j], reachable from v[i])``."""
    n = v.shape[0]
    for k in range(count):
        i = (start + k) % n
        j = (i + 1) % n
        v0 = v[i]
        a0 = accel_limit(P, v0, kabs[i])
        v2 = v0 * v0 + 2.0 * a0 * ds[i]
        vp = math.sqrt(v2) if v2 > 0.0 else 0.0
        if vp > v[j]:
            vp = v[j]
        a1 = accel_limit(P, vp, kabs[j])
        v2 = v0 * v0 + (a0 + a1) * ds[i]  # Heun: mean of the two slopes of v^2
        vn = math.sqrt(v2) if v2 > 0.0 else 0.0
        if vn < v[j]:
            v[j] = vn


@nb.njit(cache=True, nogil=True)
def _backward(v, kabs, ds, P, start, count):
    """Backward (braking) pass in place: ``v[i] = min(v[i], can still brake to v[j])``."""
    n = v.shape[0]
    for k in range(count):
        j = (start - k) % n
        i = (j - 1) % n
        v1 = v[j]
        d1 = decel_limit(P, v1, kabs[j])
        v2 = v1 * v1 + 2.0 * d1 * ds[i]
        vp = math.sqrt(v2)
        if vp > v[i]:
            vp = v[i]
        d0 = decel_limit(P, vp, kabs[i])
        vn = math.sqrt(v1 * v1 + (d0 + d1) * ds[i])
        if vn < v[i]:
            v[i] = vn


def _segments(line_s_m, closed: bool, lap_length_m) -> np.ndarray:
    s = np.asarray(line_s_m, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] < 2:
        raise ConfigError(f"line_s_m must be a 1-D array of at least 2 arc lengths, got shape {s.shape}")
    ds = np.diff(s)
    if closed:
        last = (lap_length_m - s[-1]) if lap_length_m is not None else ds[-1]
        ds = np.append(ds, last)
    else:
        ds = np.append(ds, 0.0)
    if not np.all(np.isfinite(ds)) or np.any(ds[: (None if closed else -1)] <= 0):
        raise ConfigError("line_s_m must increase strictly (and stay below lap_length_m on a closed line)")
    return ds


def speed_profile(line_s_m, kappa, vehicle, *, closed: bool = True, v_start=None, v_end=None,
                  lap_length_m=None, v_cap=None) -> np.ndarray:
    """Quasi-steady-state speed profile [m/s] (see the module docstring for the model).

    Args:
        line_s_m: (M,) arc length along the line [m], strictly increasing.
        kappa: (M,) curvature of the line [1/m].
        vehicle: :class:`VehicleParams` or a vehicle spec.
        closed: a closed loop (the last point joins the first; both passes run two laps).
        v_start, v_end: speed bounds [m/s] at the first and last point of an open line
            (``v_start=0`` for a standing start); not allowed with ``closed``.
        lap_length_m: length of a closed loop [m] (default: the last spacing repeated).
        v_cap: optional (M,) upper bounds [m/s] on top of the corner limit.
    """
    vehicle = load_vehicle(vehicle)
    k = np.abs(np.asarray(kappa, dtype=np.float64))
    ds = _segments(line_s_m, closed, lap_length_m)
    if k.shape != ds.shape or not np.all(np.isfinite(k)):
        raise ConfigError(f"kappa must be finite with the shape of line_s_m {ds.shape}, got {k.shape}")
    if closed and (v_start is not None or v_end is not None):
        raise ConfigError("v_start/v_end apply to an open line (closed=False)")
    v = corner_speed(k, vehicle)
    if v_cap is not None:
        v = np.minimum(v, np.asarray(v_cap, dtype=np.float64))
    P = vehicle.to_array()
    n = v.shape[0]
    if closed:
        i0 = int(np.argmin(v))
        _forward(v, k, ds, P, i0, 2 * n)
        _backward(v, k, ds, P, i0, 2 * n)
    else:
        if v_start is not None:
            v[0] = min(v[0], float(v_start))
        _forward(v, k, ds, P, 0, n - 1)
        if v_end is not None:
            v[-1] = min(v[-1], float(v_end))
        _backward(v, k, ds, P, n - 1, n - 1)
    return v


def lap_time(line_s_m, v_mps, *, closed: bool = True, lap_length_m=None) -> float:
    """Time [s] to drive the profile: ``sum 2 ds / (v_i + v_{i+1})`` (trapezoidal in 1/v)."""
    ds = _segments(line_s_m, closed, lap_length_m)
    v = np.asarray(v_mps, dtype=np.float64)
    vn = np.roll(v, -1)
    if not closed:
        ds, v, vn = ds[:-1], v[:-1], vn[:-1]
    vs = v + vn
    if np.any(vs <= 0):
        return math.inf
    return float(np.sum(2.0 * ds / vs))


# --------------------------------------------------------------------------- the lap
@dataclass(frozen=True)
class ReferenceLap:
    """Racing line and speed profile of one (track, vehicle); arrays are read-only.

    Build with :func:`reference_lap`. Line points ``i`` sit at centreline arc length
    ``s_m[i]`` with lateral offset ``d_m[i]`` (``track.frenet_to_xy(s_m, d_m)``).
    """

    track_name: str
    vehicle_name: str
    s_m: np.ndarray  # (M,) centreline arc length of each line point [m], from 0, increasing
    d_m: np.ndarray  # (M,) lateral offset of the racing line [m], left positive
    x_m: np.ndarray  # (M,) world x of the line points [m]
    y_m: np.ndarray  # (M,) world y [m]
    line_s_m: np.ndarray  # (M,) arc length along the racing line [m], from 0
    kappa: np.ndarray  # (M,) curvature of the racing line [1/m], left positive
    v_mps: np.ndarray  # (M,) flying-lap speed profile [m/s]
    lap_time_s: float  # flying lap [s]
    standing_lap_time_s: float  # lap 1 from a standing start on pole [s]
    line_length_m: float  # length of the racing line [m]
    length_m: float  # centreline length of the track [m] (the period of s_m)

    def _periodic(self, s, values) -> np.ndarray:
        s = np.mod(np.asarray(s, dtype=np.float64), self.length_m)
        xp = np.append(self.s_m, self.length_m)
        return np.interp(s, xp, np.append(values, values[0]))

    def speed_at(self, s) -> np.ndarray:
        """Flying-lap speed [m/s] at centreline arc length ``s`` [m] (periodic, linear)."""
        return self._periodic(s, self.v_mps)

    def offset_at(self, s) -> np.ndarray:
        """Racing-line offset ``d`` [m] at centreline arc length ``s`` [m]."""
        return self._periodic(s, self.d_m)

    def to_dict(self) -> dict:
        """Summary (``racing reference --json``)."""
        return {
            "track": self.track_name,
            "vehicle": self.vehicle_name,
            "length_m": round(float(self.length_m), 3),
            "line_length_m": round(float(self.line_length_m), 3),
            "lap_time_s": round(float(self.lap_time_s), 3),
            "standing_lap_time_s": round(float(self.standing_lap_time_s), 3),
            "max_speed_mps": round(float(np.max(self.v_mps)), 3),
            "min_speed_mps": round(float(np.min(self.v_mps)), 3),
        }


def line_geometry(x, y) -> tuple[np.ndarray, np.ndarray, float]:
    """Arc length from point 0 [m], curvature [1/m] and length [m] of the closed periodic
    cubic spline through the points ``(x, y)``."""
    p = np.c_[x, y]
    m2 = _periodic_spline_second_derivs(p)
    n = p.shape[0]
    # 3-point Gauss-Legendre on each spline segment for the length
    nodes = 0.5 + 0.5 * np.array([-math.sqrt(0.6), 0.0, math.sqrt(0.6)])
    weights = np.array([5.0, 8.0, 5.0]) / 18.0
    seg = np.zeros(n)
    for u, w in zip(nodes, weights):
        _, d1, _ = _eval_spline(p, m2, np.arange(n) + u)
        seg += w * np.hypot(d1[:, 0], d1[:, 1])
    _, d1, d2 = _eval_spline(p, m2, np.arange(n, dtype=np.float64))
    sp = np.hypot(d1[:, 0], d1[:, 1])
    kappa = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / sp**3
    return np.concatenate([[0.0], np.cumsum(seg[:-1])]), kappa, float(np.sum(seg))


def _standing_run(lap: ReferenceLap, vehicle: VehicleParams):
    """Distance along the line [m] and speed [m/s] of the standing-start lap (from pole)."""
    L = lap.length_m
    s_grid = L - GRID_GAP_M
    tail = np.nonzero(lap.s_m > s_grid)[0]
    ext_s = np.append(lap.s_m, L)
    line_start = float(np.interp(s_grid, ext_s, np.append(lap.line_s_m, lap.line_length_m)))
    # points: grid spot, the rest of the lap before the line, then a full lap to the line
    idx = np.concatenate([tail, np.arange(lap.s_m.shape[0]), [0]])
    dist = np.concatenate([lap.line_s_m[tail] - line_start, lap.line_s_m + lap.line_length_m - line_start,
                           [2 * lap.line_length_m - line_start]])
    dist = np.concatenate([[0.0], dist])
    kap = np.concatenate([[np.interp(s_grid, ext_s, np.append(lap.kappa, lap.kappa[0]))], lap.kappa[idx]])
    cap = np.concatenate([[lap.speed_at(s_grid)], lap.v_mps[idx]])
    # the flying profile already holds every braking limit: a forward pass from rest under it
    v = speed_profile(dist, kap, vehicle, closed=False, v_start=0.0, v_cap=cap)
    return dist, v


_CACHE: "weakref.WeakKeyDictionary[Track, dict]" = weakref.WeakKeyDictionary()


def reference_lap(track, vehicle, *, margin_m: float = 0.5, step_m: float = 2.0) -> ReferenceLap:
    """Minimum-curvature line and quasi-steady-state lap of ``vehicle`` on ``track``.

    Args:
        track: a :class:`Track` or a track spec (:func:`racing.trackio.load_track`).
        vehicle: :class:`VehicleParams` or a spec (preset name, YAML path).
        margin_m: distance kept from each track edge beyond half the car's width [m].
        step_m: grid spacing of the line along the centreline [m].

    Cached per (track object, vehicle, margin, step); the result is immutable.
    """
    if isinstance(track, str):
        from racing.trackio import load_track

        track = load_track(track)
    vehicle = load_vehicle(vehicle)
    key = (vehicle, float(margin_m), float(step_m))
    per_track = _CACHE.setdefault(track, {})
    if key in per_track:
        return per_track[key]
    s, d = racing_line(track, half_width_m=0.5 * vehicle.width_m, margin_m=margin_m, step_m=step_m)
    x, y, _ = track.frenet_to_xy(s, d)
    line_s, kappa, line_len = line_geometry(x, y)
    v = speed_profile(line_s, kappa, vehicle, closed=True, lap_length_m=line_len)
    t = lap_time(line_s, v, closed=True, lap_length_m=line_len)
    arrays = dict(s_m=s, d_m=d, x_m=np.asarray(x, dtype=np.float64), y_m=np.asarray(y, dtype=np.float64),
                  line_s_m=line_s, kappa=kappa, v_mps=v)
    for a in arrays.values():
        a.setflags(write=False)
    lap = ReferenceLap(track_name=track.name, vehicle_name=vehicle.name, lap_time_s=t, standing_lap_time_s=math.nan,
                       line_length_m=line_len, length_m=float(track.length), **arrays)
    dist, v_st = _standing_run(lap, vehicle)
    lap = dataclasses.replace(lap, standing_lap_time_s=lap_time(dist, v_st, closed=False))
    per_track[key] = lap
    return lap


# --------------------------------------------------------------------------- CLI
def _check_writable(path: str, what: str) -> None:
    import os

    parent = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise ConfigError(f"{what} {path!r} is a directory; give a file name")
    if not os.path.isdir(parent):
        raise ConfigError(f"cannot write {what} {path!r}: directory {parent!r} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write {what} {path!r}: permission denied")


def write_line_csv(lap: ReferenceLap, path: str) -> None:
    """Write ``s_m,x_m,y_m,v_mps`` (``s_m`` along the racing line) one row per point."""
    data = np.c_[lap.line_s_m, lap.x_m, lap.y_m, lap.v_mps]
    try:
        np.savetxt(path, data, delimiter=",", header="s_m,x_m,y_m,v_mps", comments="", fmt="%.4f")
    except OSError as exc:
        raise ConfigError(f"cannot write line CSV {path!r}: {exc.strerror or exc}") from None


def plot_reference(lap: ReferenceLap, track: Track, vehicle: VehicleParams, path: str) -> None:
    """Track map with the line coloured by speed, and the speed trace below (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'racing-rl[render]'") from None

    kmh = 3.6
    edges = np.vstack([track.left_edge, track.right_edge])
    aspect = float(np.clip(np.ptp(edges[:, 1]) / max(np.ptp(edges[:, 0]), 1e-9), 0.3, 1.4))
    width_in = 11.0
    map_in = 0.85 * width_in * aspect  # the map's height for equal axes (colourbar aside)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(width_in, map_in + 4.2),
                                  gridspec_kw={"height_ratios": [map_in, 3.0]})
    for edge in (track.left_edge, track.right_edge):
        e = np.vstack([edge, edge[:1]])
        ax.plot(e[:, 0], e[:, 1], color="0.35", lw=0.9)
    pts = np.c_[np.append(lap.x_m, lap.x_m[0]), np.append(lap.y_m, lap.y_m[0])]
    segs = np.stack([pts[:-1], pts[1:]], axis=1)
    vkmh = lap.v_mps * kmh
    lc = LineCollection(segs, cmap="turbo", linewidths=2.2)
    lc.set_array(0.5 * (vkmh + np.roll(vkmh, -1)))
    lc.set_clim(vkmh.min(), vkmh.max())
    ax.add_collection(lc)
    cb = fig.colorbar(lc, ax=ax, fraction=0.035, pad=0.015)
    cb.set_label("flying-lap speed [km/h]")
    # start/finish line and driving direction
    lx, ly, lh = track.frenet_to_xy(0.0, np.array([-track.w_right[0], track.w_left[0]]))
    ax.plot(lx, ly, color="k", lw=2.5)
    hx, hy = float(np.cos(np.ravel(lh)[0])), float(np.sin(np.ravel(lh)[0]))
    span = max(np.ptp(track.x), np.ptp(track.y))
    ax.annotate("", xy=(track.x[0] + 0.06 * span * hx, track.y[0] + 0.06 * span * hy), xytext=(track.x[0], track.y[0]),
                arrowprops=dict(arrowstyle="->", lw=1.8, color="k"))
    ax.text(track.x[0], track.y[0], "  start", fontsize=9, va="bottom")
    imin = int(np.argmin(lap.v_mps))
    ax.plot(lap.x_m[imin], lap.y_m[imin], "o", ms=6, mfc="none", mec="k")
    # label the slowest point towards the middle of the map, so it stays inside the axes
    cx, cy = float(np.mean(edges[:, 0])), float(np.mean(edges[:, 1]))
    ux, uy = cx - lap.x_m[imin], cy - lap.y_m[imin]
    un = math.hypot(ux, uy) or 1.0
    ax.annotate(f"slowest {vkmh[imin]:.0f} km/h", (lap.x_m[imin], lap.y_m[imin]), textcoords="offset points",
                xytext=(28 * ux / un, 28 * uy / un), fontsize=9, ha="center", va="center")
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(f"Reference lap: {vehicle.name} on {track.name}   flying {lap.lap_time_s:.3f} s, "
                 f"standing {lap.standing_lap_time_s:.3f} s")
    dist, v_st = _standing_run(lap, vehicle)
    off = dist[-1] - lap.line_length_m  # distance driven before the line on the standing lap
    ax2.plot(np.append(lap.line_s_m, lap.line_length_m), np.append(vkmh, vkmh[0]), color="C0", lw=1.5,
             label=f"flying lap {lap.lap_time_s:.3f} s")
    ax2.plot(dist - off, v_st * kmh, color="C3", lw=1.0, ls="--", label=f"standing lap {lap.standing_lap_time_s:.3f} s")
    ax2.axhline(vehicle.top_speed_mps * kmh, color="0.6", lw=0.8, ls=":", label="top speed")
    ax2.set_xlim(-off, lap.line_length_m)
    ax2.set_ylim(0, vehicle.top_speed_mps * kmh * 1.08)
    ax2.set_xlabel("distance along the racing line from the start line [m]")
    ax2.set_ylabel("speed [km/h]")
    ax2.grid(alpha=0.3)
    ax2.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise ConfigError(f"cannot write plot {path!r}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def _cmd(args: argparse.Namespace) -> int:
    import json

    from racing.trackio import load_track

    if args.line:
        _check_writable(args.line, "line CSV")
    if args.plot:
        _check_writable(args.plot, "plot")
    if not (math.isfinite(args.margin) and args.margin >= 0):
        raise ConfigError(f"--margin must be a non-negative number of metres, got {args.margin}")
    track = load_track(args.track)
    vehicle = load_vehicle(args.vehicle)
    t0 = time.perf_counter()
    print(f"racing reference: computing the racing line and speed profile of {vehicle.name} on {track.name} ...",
          file=sys.stderr, flush=True)
    lap = reference_lap(track, vehicle, margin_m=args.margin, step_m=args.step)
    print(f"racing reference: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    if args.line:
        write_line_csv(lap, args.line)
    if args.plot:
        plot_reference(lap, track, vehicle, args.plot)
    if args.json:
        print(json.dumps(lap.to_dict(), indent=2))
        return 0
    d = lap.to_dict()
    print(f"reference lap: {vehicle.name} on {track.name} (centreline {d['length_m']:.1f} m, "
          f"racing line {d['line_length_m']:.1f} m)")
    print(f"  flying lap    {lap.lap_time_s:8.3f} s   average {lap.line_length_m / lap.lap_time_s * 3.6:6.1f} km/h")
    print(f"  standing lap  {lap.standing_lap_time_s:8.3f} s   (from rest {GRID_GAP_M:g} m behind the line)")
    print(f"  speed         {d['min_speed_mps']:.1f} - {d['max_speed_mps']:.1f} m/s "
          f"({d['min_speed_mps'] * 3.6:.0f} - {d['max_speed_mps'] * 3.6:.0f} km/h)")
    if args.line:
        print(f"  line written to {args.line}")
    if args.plot:
        print(f"  plot written to {args.plot}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("reference", help="reference lap: minimum-curvature line and quasi-steady-state lap time")
    p.add_argument("--track", required=True, help="built-in name, random:SEED, or a CSV path")
    p.add_argument("--vehicle", default="gt3", help="vehicle preset or YAML (default: gt3)")
    p.add_argument("--margin", type=float, default=0.5, help="distance kept from the track edges [m] (default 0.5)")
    p.add_argument("--step", type=float, default=2.0, help="line grid spacing along the centreline [m] (default 2)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--line", metavar="CSV", help="write the line as CSV: s_m,x_m,y_m,v_mps (s along the line)")
    p.add_argument("--plot", metavar="PNG", help="draw the line coloured by speed and the speed trace (matplotlib)")
    p.set_defaults(func=_cmd)

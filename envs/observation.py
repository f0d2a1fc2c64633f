"""The observation builder shared by every environment (and by runtimes without torch).

``build_observations(sim, cars, config)`` returns one float32 row per car of a
:class:`racing.sim.RaceSim`, in the layout that ``observation_spec(config)`` describes
element by element (name, unit, scale, description). It needs only numpy, numba and the
simulator, so a game-engine runtime builds exactly the observations a policy was trained on.

Layout, in the spirit of GT Sophy (Wurman et al., Nature 2022; see REFERENCES.md), every
element divided by the scale given here (all positions and velocities in the car's body
frame: ``x`` forward, ``y`` left):

1. **Ego dynamics** (10): body-frame velocity ``vx`` (/50 m/s) and ``vy`` (/10 m/s), yaw
   rate (/1 rad/s), body accelerations ``ax``, ``ay`` (/10 m/s^2), front and rear slip
   angles (/0.2 rad; the GT3 tyres peak near 0.13 rad), front and rear axle loads divided
   by the car's weight ``m g`` (downforce makes the sum exceed 1 at speed), road-wheel
   steering angle divided by the vehicle's ``max_steer_rad`` (so in [-1, 1]).
2. **Previous action** (2): the last ``[steer, throttle_brake]`` command, in [-1, 1].
3. **Flags** (2): off track (the car's centre beyond an edge), wall contact during the
   last control step; 0 or 1.
4. **Course points** (``6 K``, ``K = course_points``): ``K`` points on each of the left
   edge, the centreline and the right edge, at arc lengths ``s + k L / K`` for
   ``k = 0 .. K-1`` ahead of the car's own projection ``s``, where the look-ahead
   ``L = max(min_lookahead_m, speed * lookahead_time_s)`` covers about 6 s at the current
   speed (GT Sophy: 60 points per line over the next 6 s; it beat lidar and curvature
   inputs). Each point is ``(x / 100 m, y / 10 m)`` in the car frame; the lines follow one
   another (left edge points, then centreline, then right edge). Point ``k = 0`` lies
   beside the car, so its ``y`` values say where the car is between the edges.
5. **Opponents** (``2 * num_opponents * 5``, only when ``num_opponents > 0``): two lists,
   the nearest ``num_opponents`` active cars ahead (track gap in ``[0,
   opponent_range_ahead_m]``) and behind (gap in ``[-opponent_range_behind_m, 0)``),
   nearest first; the gap is the wrap-aware difference of ``s`` along the track. Each
   slot: ``present`` (1 or 0; an empty slot is all zeros), relative position ``(x / 100 m,
   y / 10 m)`` and relative velocity of the opponent w.r.t. the car ``(vx, vy) / 10 m/s``,
   both in the car frame.

Everything is computed by one numba kernel over all requested cars (no Python loop per
car): under a microsecond per car in a batch with the default 20 points per line, plus a
few microseconds per call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numba as nb
import numpy as np

from racing.dynamics import (
    F_ALPHAF, F_ALPHAR, F_AX, F_AY, F_FZF, F_FZR, F_R, F_S, F_STEER, F_STEER_CMD, F_THROTTLE_CMD, F_VX, F_VY,
    F_X, F_Y, F_YAW, G, I_ACTIVE, I_OFF, I_WALL, P_M, P_SMAX,
)
from racing.errors import ConfigError

# ------------------------------------------------------------------ scales (documented)
SCALE_VX_MPS = 50.0  # body-frame longitudinal velocity
SCALE_VY_MPS = 10.0  # body-frame lateral velocity
SCALE_YAW_RATE_RADPS = 1.0
SCALE_ACCEL_MPS2 = 10.0  # about 1 g
SCALE_SLIP_RAD = 0.2  # tyre slip angles (peak grip near 0.13 rad for the presets)
SCALE_X_M = 100.0  # forward coordinate of course points and opponents
SCALE_Y_M = 10.0  # lateral coordinate of course points and opponents
SCALE_REL_V_MPS = 10.0  # opponents' relative velocity

NUM_EGO = 14  # ego dynamics (10) + previous action (2) + flags (2)
OPPONENT_SLOT = 5  # present, x, y, vx, vy
COURSE_LINES = ("left", "centre", "right")


@dataclass(frozen=True)
class ObsConfig:
    """What the observation contains. Validated at construction (:class:`ConfigError`).

    Attributes:
        course_points: points per course line (left edge, centreline, right edge); GT Sophy
            used 60, 20 is enough at 10 Hz and keeps the input small.
        lookahead_time_s: [s] the course points cover this much time at the current speed.
        min_lookahead_m: [m] shortest look-ahead (at low speed).
        num_opponents: opponents per list (ahead, behind); 0 leaves the block out.
        opponent_range_ahead_m, opponent_range_behind_m: [m] track gap within which a
            car is listed.
    """

    course_points: int = 20
    lookahead_time_s: float = 6.0
    min_lookahead_m: float = 30.0
    num_opponents: int = 0
    opponent_range_ahead_m: float = 100.0
    opponent_range_behind_m: float = 50.0

    def __post_init__(self):
        for name in ("course_points", "num_opponents"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"{name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if not 1 <= self.course_points <= 1000:
            raise ConfigError(f"course_points must be in [1, 1000], got {self.course_points}")
        if not 0 <= self.num_opponents <= 64:
            raise ConfigError(f"num_opponents must be in [0, 64], got {self.num_opponents}")
        for name in ("lookahead_time_s", "min_lookahead_m", "opponent_range_ahead_m", "opponent_range_behind_m"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.lookahead_time_s < 0.0:
            raise ConfigError(f"lookahead_time_s must be >= 0, got {self.lookahead_time_s}")
        for name in ("min_lookahead_m", "opponent_range_ahead_m", "opponent_range_behind_m"):
            if getattr(self, name) <= 0.0:
                raise ConfigError(f"{name} must be > 0 m, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: dict | None) -> "ObsConfig":
        """Build from a mapping (e.g. YAML); an unknown key is an error naming the allowed ones."""
        data = dict(data or {})
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown observation setting(s) {unknown}; allowed: {allowed}")
        return cls(**data)

    @property
    def dim(self) -> int:
        """Length of one observation row."""
        return NUM_EGO + 6 * self.course_points + 2 * self.num_opponents * OPPONENT_SLOT


def observation_spec(config: ObsConfig | None = None) -> list[dict]:
    """One dict per observation element, in order: ``name``, ``unit`` (of the raw
    quantity), ``scale`` (the raw value is divided by it: a number, or a string naming a
    per-vehicle quantity) and ``description``."""
    cfg = config or ObsConfig()
    spec = [
        dict(name="vx", unit="m/s", scale=SCALE_VX_MPS, description="body-frame longitudinal velocity"),
        dict(name="vy", unit="m/s", scale=SCALE_VY_MPS, description="body-frame lateral velocity (left positive)"),
        dict(name="yaw_rate", unit="rad/s", scale=SCALE_YAW_RATE_RADPS, description="yaw rate (counter-clockwise positive)"),
        dict(name="ax", unit="m/s^2", scale=SCALE_ACCEL_MPS2, description="body longitudinal acceleration (filtered)"),
        dict(name="ay", unit="m/s^2", scale=SCALE_ACCEL_MPS2, description="body lateral acceleration (left positive)"),
        dict(name="slip_front", unit="rad", scale=SCALE_SLIP_RAD, description="front axle slip angle"),
        dict(name="slip_rear", unit="rad", scale=SCALE_SLIP_RAD, description="rear axle slip angle"),
        dict(name="load_front", unit="N", scale="m*g (vehicle weight)", description="front axle load / vehicle weight"),
        dict(name="load_rear", unit="N", scale="m*g (vehicle weight)", description="rear axle load / vehicle weight"),
        dict(name="steer_angle", unit="rad", scale="max_steer_rad (vehicle)",
             description="road-wheel steering angle / full lock, in [-1, 1]"),
        dict(name="prev_steer", unit="-", scale=1.0, description="last steering command, in [-1, 1]"),
        dict(name="prev_throttle_brake", unit="-", scale=1.0,
             description="last throttle (+) / brake (-) command, in [-1, 1]"),
        dict(name="off_track", unit="-", scale=1.0, description="1 if the car's centre is beyond a track edge, else 0"),
        dict(name="wall_contact", unit="-", scale=1.0, description="1 if the car touched a wall during the last control step"),
    ]
    K = cfg.course_points
    for line, what in zip(COURSE_LINES, ("left track edge", "centreline", "right track edge")):
        for k in range(K):
            where = f"{what} point {k} of {K} (arc length s + {k}/{K} of the look-ahead)"
            spec.append(dict(name=f"{line}_{k}_x", unit="m", scale=SCALE_X_M, description=f"{where}: forward coordinate in the car frame"))
            spec.append(dict(name=f"{line}_{k}_y", unit="m", scale=SCALE_Y_M, description=f"{where}: left coordinate in the car frame"))
    for side in ("ahead", "behind"):
        for k in range(cfg.num_opponents):
            who = f"opponent {side} #{k + 1} (nearest first)"
            spec += [
                dict(name=f"{side}_{k}_present", unit="-", scale=1.0, description=f"{who}: 1 if the slot holds a car, else 0 (all zeros)"),
                dict(name=f"{side}_{k}_x", unit="m", scale=SCALE_X_M, description=f"{who}: relative position, forward"),
                dict(name=f"{side}_{k}_y", unit="m", scale=SCALE_Y_M, description=f"{who}: relative position, left"),
                dict(name=f"{side}_{k}_vx", unit="m/s", scale=SCALE_REL_V_MPS, description=f"{who}: relative velocity, forward"),
                dict(name=f"{side}_{k}_vy", unit="m/s", scale=SCALE_REL_V_MPS, description=f"{who}: relative velocity, left"),
            ]
    assert len(spec) == cfg.dim
    return spec


# ============================================================================ kernel
@nb.njit(cache=True, nogil=True)
def _insert_nearest(gaps, idx, count, n_max, gap, q):
    """Insert car ``q`` at ``gap`` into the sorted (nearest first) list ``gaps``/``idx`` of
    ``count`` entries, keeping at most ``n_max``; returns the new count."""
    pos = count
    while pos > 0 and gaps[pos - 1] > gap:
        pos -= 1
    if pos >= n_max:
        return count
    last = count if count < n_max else n_max - 1
    for m in range(last, pos, -1):
        gaps[m] = gaps[m - 1]
        idx[m] = idx[m - 1]
    gaps[pos] = gap
    idx[pos] = q
    return count + 1 if count < n_max else count


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _observation_kernel(out, cars, F, I, P, race_track, cars_per_race, pk_x, pk_y, pk_wl, pk_wr, pk_off, pk_n,
                        pk_ds, n_points, look_time, look_min, n_opp, range_ahead, range_behind):
    """Write one observation row per car of ``cars`` into ``out`` (float32)."""
    ahead_gap = np.empty(max(n_opp, 1))
    ahead_idx = np.empty(max(n_opp, 1), dtype=np.int64)
    behind_gap = np.empty(max(n_opp, 1))
    behind_idx = np.empty(max(n_opp, 1), dtype=np.int64)
    for row in range(cars.shape[0]):
        c = cars[row]
        o = out[row]
        vx = F[F_VX, c]
        vy = F[F_VY, c]
        weight = P[c, P_M] * G
        o[0] = vx / SCALE_VX_MPS
        o[1] = vy / SCALE_VY_MPS
        o[2] = F[F_R, c] / SCALE_YAW_RATE_RADPS
        o[3] = F[F_AX, c] / SCALE_ACCEL_MPS2
        o[4] = F[F_AY, c] / SCALE_ACCEL_MPS2
        o[5] = F[F_ALPHAF, c] / SCALE_SLIP_RAD
        o[6] = F[F_ALPHAR, c] / SCALE_SLIP_RAD
        o[7] = F[F_FZF, c] / weight
        o[8] = F[F_FZR, c] / weight
        o[9] = F[F_STEER, c] / P[c, P_SMAX]
        o[10] = F[F_STEER_CMD, c]
        o[11] = F[F_THROTTLE_CMD, c]
        o[12] = 1.0 if I[I_OFF, c] != 0 else 0.0
        o[13] = 1.0 if I[I_WALL, c] != 0 else 0.0

        # ---- course points: each line's points at the track samples (edges offset along
        # the sample's normal, as Track.left_edge / right_edge), linear in between
        race = c // cars_per_race
        t = race_track[race]
        off = pk_off[t]
        n = pk_n[t]
        ds = pk_ds[t]
        length = n * ds
        px = F[F_X, c]
        py = F[F_Y, c]
        yaw = F[F_YAW, c]
        cy = math.cos(yaw)
        sy = math.sin(yaw)
        speed = math.sqrt(vx * vx + vy * vy)
        look = speed * look_time
        if look < look_min:
            look = look_min
        step = look / n_points
        s0 = F[F_S, c]
        K = n_points
        base = NUM_EGO
        for k in range(K):
            sk = s0 + k * step
            sk = sk - length * math.floor(sk / length)
            f = sk / ds
            i = int(f)
            u = f - i
            if i >= n:  # rounding at the wrap
                i = n - 1
                u = 1.0
            j = i + 1 if i + 1 < n else 0
            # unit left normals at samples i and j from central differences (exact on arcs)
            ip = i - 1 if i > 0 else n - 1
            jn = j + 1 if j + 1 < n else 0
            tx = pk_x[off + j] - pk_x[off + ip]
            ty = pk_y[off + j] - pk_y[off + ip]
            inv = 1.0 / math.sqrt(tx * tx + ty * ty)
            nix = -ty * inv
            niy = tx * inv
            tx = pk_x[off + jn] - pk_x[off + i]
            ty = pk_y[off + jn] - pk_y[off + i]
            inv = 1.0 / math.sqrt(tx * tx + ty * ty)
            njx = -ty * inv
            njy = tx * inv
            xi = pk_x[off + i]
            yi = pk_y[off + i]
            xj = pk_x[off + j]
            yj = pk_y[off + j]
            wli = pk_wl[off + i]
            wlj = pk_wl[off + j]
            wri = pk_wr[off + i]
            wrj = pk_wr[off + j]
            for line in range(3):
                # the point on this line at samples i and j, then linear in between
                if line == 0:
                    ax = xi + nix * wli
                    ay = yi + niy * wli
                    bx = xj + njx * wlj
                    by = yj + njy * wlj
                elif line == 1:
                    ax = xi
                    ay = yi
                    bx = xj
                    by = yj
                else:
                    ax = xi - nix * wri
                    ay = yi - niy * wri
                    bx = xj - njx * wrj
                    by = yj - njy * wrj
                dx = ax + u * (bx - ax) - px
                dy = ay + u * (by - ay) - py
                idx = base + 2 * (line * K + k)
                o[idx] = (dx * cy + dy * sy) / SCALE_X_M
                o[idx + 1] = (-dx * sy + dy * cy) / SCALE_Y_M

        if n_opp == 0:
            continue
        # ---- opponents: nearest active cars ahead / behind by track gap
        base = NUM_EGO + 6 * K
        for k in range(2 * n_opp * OPPONENT_SLOT):
            o[base + k] = 0.0
        na = 0
        nb_ = 0
        c0 = race * cars_per_race
        for q in range(c0, c0 + cars_per_race):
            if q == c or I[I_ACTIVE, q] == 0:
                continue
            gap = F[F_S, q] - s0
            if gap > 0.5 * length:
                gap -= length
            elif gap <= -0.5 * length:
                gap += length
            if gap >= 0.0:
                if gap <= range_ahead:
                    na = _insert_nearest(ahead_gap, ahead_idx, na, n_opp, gap, q)
            elif -gap <= range_behind:
                nb_ = _insert_nearest(behind_gap, behind_idx, nb_, n_opp, -gap, q)
        # ego world velocity
        evx = vx * cy - vy * sy
        evy = vx * sy + vy * cy
        for side in range(2):
            cnt = na if side == 0 else nb_
            for m in range(cnt):
                q = ahead_idx[m] if side == 0 else behind_idx[m]
                dx = F[F_X, q] - px
                dy = F[F_Y, q] - py
                yq = F[F_YAW, q]
                cq = math.cos(yq)
                sq = math.sin(yq)
                qvx = F[F_VX, q] * cq - F[F_VY, q] * sq - evx
                qvy = F[F_VX, q] * sq + F[F_VY, q] * cq - evy
                idx = base + (side * n_opp + m) * OPPONENT_SLOT
                o[idx] = 1.0
                o[idx + 1] = (dx * cy + dy * sy) / SCALE_X_M
                o[idx + 2] = (-dx * sy + dy * cy) / SCALE_Y_M
                o[idx + 3] = (qvx * cy + qvy * sy) / SCALE_REL_V_MPS
                o[idx + 4] = (-qvx * sy + qvy * cy) / SCALE_REL_V_MPS


def build_observations(sim, cars=None, config: ObsConfig | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Observations of ``cars`` (global indices; default all) of ``sim``: float32
    ``(len(cars), config.dim)`` in the layout of :func:`observation_spec`.

    ``out`` (float32, C-contiguous, that shape) is filled in place and returned when given.
    """
    cfg = config or ObsConfig()
    if cars is None:
        cars = np.arange(sim.num_cars, dtype=np.int64)
    else:
        cars = np.ascontiguousarray(cars, dtype=np.int64).reshape(-1)
    if out is None:
        out = np.empty((cars.shape[0], cfg.dim), dtype=np.float32)
    elif out.shape != (cars.shape[0], cfg.dim) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {(cars.shape[0], cfg.dim)}, "
                         f"got {out.shape} {out.dtype}")
    return observe_into(out, sim, cars, cfg)


def observe_into(out: np.ndarray, sim, cars: np.ndarray, config: ObsConfig) -> np.ndarray:
    """:func:`build_observations` without its argument checks, for callers that step often
    with arguments they own: ``cars`` a C-contiguous int64 array, ``out`` a C-contiguous
    float32 array of shape ``(len(cars), config.dim)`` (filled and returned)."""
    # the packed track tables the simulator kernels use (kept current by RaceSim.set_track)
    pk = sim.pack
    _observation_kernel(out, cars, sim.F, sim.I, sim.P, sim.race_track, sim.cars_per_race, pk.x, pk.y, pk.w_left,
                        pk.w_right, pk.offset, pk.count, pk.ds, config.course_points, config.lookahead_time_s,
                        config.min_lookahead_m, config.num_opponents, config.opponent_range_ahead_m,
                        config.opponent_range_behind_m)
    return out

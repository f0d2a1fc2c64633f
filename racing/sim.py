"""The batched race simulator: B independent races x N cars, stepped in one kernel call.

Every car of every race lives in one struct-of-arrays state (:mod:`racing.dynamics`
declares the layout). One :meth:`RaceSim.step` advances all races by one control step
(``1 / control_hz``, 0.1 s by default) of ``physics_hz / control_hz`` physics substeps. Each
substep: slipstream factors (first substep only), the vehicle model, Frenet projection (local search), progress
and line crossings, track limits, walls, car-to-car contact. Races run in parallel threads
(``numba.prange``); cars of one race interact, races never do.

Progress is signed and wrap-aware: ``dist`` (race distance) grows by the signed change of
``s`` wrapped to ``(-L/2, L/2]``, so driving backwards loses progress. The start/finish line
sits at race distances ``k L``; the next one a car must reach only advances when it is
crossed forwards, so reversing over the line and crossing it again never counts twice.
A lap completes at a crossing when lap timing runs and at least half a lap was driven since
the lap started (only the first lap after a standing start can be shorter or longer than
``L``; every later lap is exactly one lap of race distance). A lap is invalid if the car's
centre left the track (more than half the car beyond an edge) or it cut a corner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import NamedTuple, Sequence

import numba as nb
import numpy as np

from racing import dynamics as dy
from racing.dynamics import (
    E_A, E_AUX, E_B, E_DA, E_DB, E_DDOTA, E_DDOTB, E_INDEX, E_NX, E_NY, E_SA, E_SB, E_SPEED2T, E_TIME,
    E_TYPE, E_VALUE, E_X, E_Y, EV_CAR, EV_CORNER_CUT, EV_LAP, EV_OFF_TRACK, EV_SECTOR, EV_WALL,
    F_AX, F_D, F_DDOT, F_DIST, F_DRAFT, F_LAP_D0, F_LAP_T0, F_NEXT_LINE, F_NEXT_SECTOR, F_OFF_TIME,
    F_PROGRESS_STEP, F_R, F_S, F_SECTOR_T0, F_STEER, F_STEER_CMD, F_THROTTLE_CMD, F_VX, F_VY,
    F_WALL_SPEED2_TIME, F_WALL_TIME, F_X, F_Y, F_YAW, I_ACTIVE, I_CAR_CONTACT, I_LAP_VALID, I_LAPS,
    I_OFF, I_SECTOR, I_SEG, I_TIMING, I_WALL, NUM_C, NUM_E, NUM_F, NUM_I, P_IZ, P_LEN, P_LF, P_LR,
    P_M, P_WID,
)
from racing.errors import ConfigError
from racing.track import Track, project_packed
from racing.vehicle import NUM_PARAMS, VehicleParams, load_vehicle

MAX_SECTORS = 8


@dataclass(frozen=True)
class SimConfig:
    """Simulator settings shared by all races of a :class:`RaceSim`. Units in brackets."""

    control_hz: float = 10.0  # [Hz] control (action) rate; GT Sophy found no gain above 10 Hz
    physics_hz: float = 100.0  # [Hz] fixed physics step; must be a multiple of control_hz
    runoff_mu_scale: float = 0.6  # [-] tyre grip multiplier on run-off
    runoff_rolling: float = 0.08  # [-] rolling resistance coefficient on run-off (grass/gravel)
    wall_restitution: float = 0.3  # [-]
    wall_friction: float = 0.5  # [-]
    car_restitution: float = 0.2  # [-]
    car_friction: float = 0.3  # [-]
    draft_max: float = 0.45  # [-] drag reduction right behind another car
    draft_length_m: float = 25.0  # [m] e-folding length of the wake
    draft_range_m: float = 80.0  # [m] no slipstream beyond this gap
    draft_width_m: float = 1.6  # [m] lateral e-folding width of the wake
    corner_cut_radius_m: float = 200.0  # [m] leaving on the inside of a tighter bend is a cut
    max_events: int = 64  # per race and control step; extra events are counted as dropped

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ConfigError(f"SimConfig.{f.name} must be a finite number, got {v!r}")
        for k in ("control_hz", "physics_hz", "draft_length_m", "draft_range_m", "draft_width_m",
                  "corner_cut_radius_m"):
            if getattr(self, k) <= 0:
                raise ConfigError(f"SimConfig.{k} must be > 0, got {getattr(self, k)}")
        for k in ("runoff_mu_scale", "wall_restitution", "car_restitution", "draft_max"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"SimConfig.{k} must be in [0, 1], got {getattr(self, k)}")
        if self.draft_max >= 1.0:
            raise ConfigError("SimConfig.draft_max must be below 1")
        for k in ("runoff_rolling", "wall_friction", "car_friction"):
            if getattr(self, k) < 0:
                raise ConfigError(f"SimConfig.{k} must be >= 0, got {getattr(self, k)}")
        ratio = self.physics_hz / self.control_hz
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ConfigError(
                f"SimConfig.physics_hz ({self.physics_hz}) must be a whole multiple of control_hz ({self.control_hz})"
            )
        if int(self.max_events) < 4:
            raise ConfigError(f"SimConfig.max_events must be >= 4, got {self.max_events}")

    @property
    def substeps(self) -> int:
        return int(round(self.physics_hz / self.control_hz))

    @property
    def dt(self) -> float:
        """Physics step [s]."""
        return 1.0 / self.physics_hz

    @property
    def control_dt(self) -> float:
        """Control step [s]."""
        return 1.0 / self.control_hz

    def to_array(self) -> np.ndarray:
        c = np.zeros(NUM_C)
        c[dy.C_RUNOFF_MU] = self.runoff_mu_scale
        c[dy.C_RUNOFF_ROLL] = self.runoff_rolling
        c[dy.C_WALL_E] = self.wall_restitution
        c[dy.C_WALL_MU] = self.wall_friction
        c[dy.C_CAR_E] = self.car_restitution
        c[dy.C_CAR_MU] = self.car_friction
        c[dy.C_DRAFT_MAX] = self.draft_max
        c[dy.C_DRAFT_LEN] = self.draft_length_m
        c[dy.C_DRAFT_RANGE] = self.draft_range_m
        c[dy.C_DRAFT_WIDTH] = self.draft_width_m
        c[dy.C_CUT_KAPPA] = 1.0 / self.corner_cut_radius_m
        return c


class TrackPack(NamedTuple):
    """Several tracks concatenated for the kernels (sample ``k`` of track ``t`` is at
    ``offset[t] + k``). The per-sample arrays are rows of :attr:`samples`."""

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    kappa: np.ndarray
    w_left: np.ndarray
    w_right: np.ndarray
    offset: np.ndarray  # (T,) int64
    count: np.ndarray  # (T,) int64
    ds: np.ndarray  # (T,) [m]
    wall_left: np.ndarray  # [m] centreline to the left wall
    wall_right: np.ndarray  # [m] centreline to the right wall
    sectors: np.ndarray  # (T, MAX_SECTORS) [m] sector start s; unused slots = +inf
    nsec: np.ndarray  # (T,) int64
    # (8, samples): x, y, heading, kappa, w_left, w_right, wall_left, wall_right (the arrays
    # above are its rows), so that the simulator kernels take them as one argument
    samples: np.ndarray

    @staticmethod
    def build(tracks: Sequence[Track]) -> "TrackPack":
        counts = np.array([t.n for t in tracks], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        sectors = np.full((len(tracks), MAX_SECTORS), np.inf)
        for k, t in enumerate(tracks):
            if t.num_sectors > MAX_SECTORS:
                raise ConfigError(f"track '{t.name}' has {t.num_sectors} sectors; at most {MAX_SECTORS} are supported")
            sectors[k, : t.num_sectors] = t.sector_starts_s
        cat = np.concatenate
        samples = np.stack([
            cat([t.x for t in tracks]), cat([t.y for t in tracks]), cat([np.mod(t.heading, 2 * np.pi) for t in tracks]),
            cat([t.kappa for t in tracks]), cat([t.w_left for t in tracks]), cat([t.w_right for t in tracks]),
            cat([wall_distance(t.w_left, t.wall_margin_m, t.kappa) for t in tracks]),
            cat([wall_distance(t.w_right, t.wall_margin_m, -t.kappa) for t in tracks]),
        ])
        x, y, heading, kappa, w_left, w_right, wall_left, wall_right = samples  # C-contiguous rows
        return TrackPack(
            x, y, heading, kappa, w_left, w_right, offsets, counts, np.array([t.ds for t in tracks]),
            wall_left, wall_right, sectors, np.array([t.num_sectors for t in tracks], dtype=np.int64), samples,
        )


def wall_distance(width: np.ndarray, margin: float, kappa_towards: np.ndarray) -> np.ndarray:
    """Distance [m] from the centreline to a wall ``margin`` beyond the edge, pulled in on
    the inside of tight bends so that it stays at least half the radius away from the centre
    of curvature (the walls are half-planes in the local track frame, which would otherwise
    fold over in hairpins). ``kappa_towards`` is the curvature towards that side."""
    wall = width + margin
    inside = kappa_towards > 0
    limit = np.where(inside, 0.5 / np.maximum(kappa_towards, 1e-12), np.inf)
    return np.maximum(np.minimum(wall, limit), width + 0.5)


# ============================================================================ kernel
@nb.njit(cache=True, nogil=True)
def _add_event(ev, evn, b, max_ev, typ, a, other, t):
    """Append (or find, for contacts already recorded this control step) an event row."""
    n = evn[b]
    if typ == EV_CAR or typ == EV_WALL:
        for k in range(min(n, max_ev)):
            if ev[b, k, E_TYPE] == typ and ev[b, k, E_A] == a and ev[b, k, E_B] == other:
                return k
    evn[b] = n + 1
    if n >= max_ev:
        return -1
    for f in range(NUM_E):
        ev[b, n, f] = 0.0
    ev[b, n, E_TYPE] = typ
    ev[b, n, E_A] = a
    ev[b, n, E_B] = other
    ev[b, n, E_TIME] = t
    return n


@nb.njit(cache=True, nogil=True)
def _track_limit_event(ev, evn, b, max_ev, typ, c, t, x, y, s, d, side):
    """Record an off-track or corner-cut event of car ``c`` at ``(x, y)``, track position
    ``(s, d)``, on ``side`` (1 left, -1 right)."""
    k = _add_event(ev, evn, b, max_ev, typ, c, -1.0, t)
    if k >= 0:
        ev[b, k, E_X] = x
        ev[b, k, E_Y] = y
        ev[b, k, E_SA] = s
        ev[b, k, E_DA] = d
        ev[b, k, E_INDEX] = side


@nb.njit(cache=True, nogil=True)
def _race_steps(b0, b1, F, I, U, P, race_track, race_time, pk_x, pk_y, pk_h, pk_k, pk_wl, pk_wr, pk_off,
                pk_n, pk_ds, pk_wall_l, pk_wall_r, pk_sec, pk_nsec, cfg, n_cars, n_sub, dt, ev, evn, max_ev):
    """Advance races ``b0 .. b1 - 1`` by one control step. One call steps many races: each
    call of a jitted function with array arguments costs atomic reference counting."""
    # per car of the race being stepped, carried from one substep to the next (exactly the
    # values the substep would recompute): sin(yaw - track heading at the car's segment), as
    # computed for F_DDOT at the end of the previous substep (nothing between changes the
    # yaw or the segment), and half the car's diagonal
    scratch = np.empty((7, n_cars))  # one allocation per call
    srel_of = scratch[0]
    half_diag = scratch[1]
    steer_trig = scratch[2:5]  # the road-wheel angle and its cos and sin (vehicle_substep_row)
    yaw_cs = scratch[5:7]  # cos and sin of each car's yaw (slipstream)
    for b in range(b0, b1):
        t_idx = race_track[b]
        off = pk_off[t_idx]
        n = pk_n[t_idx]
        ds = pk_ds[t_idx]
        length = n * ds
        nsec = pk_nsec[t_idx]
        c0 = b * n_cars
        c1 = c0 + n_cars
        evn[b] = 0
        steer_trig[0, :] = np.nan
        for c in range(c0, c1):
            F[F_PROGRESS_STEP, c] = 0.0
            F[F_WALL_SPEED2_TIME, c] = 0.0
            I[I_WALL, c] = 0
            I[I_CAR_CONTACT, c] = 0
            F[F_STEER_CMD, c] = U[c, 0]
            F[F_THROTTLE_CMD, c] = U[c, 1]
        draft_max = cfg[dy.C_DRAFT_MAX]
        for _sub in range(n_sub):
            t_now = race_time[b]
            # ---- slipstream: drag reduction behind the nearest car ahead in its wake (once per
            # control step: the wake geometry changes little in 0.1 s and this loop is O(N^2));
            # each car's heading cos and sin once, not once per pair
            if _sub == 0 and n_cars > 1 and draft_max > 0.0:
                for o in range(c0, c1):
                    if I[I_ACTIVE, o] == 1:
                        ho = F[F_YAW, o]
                        yaw_cs[0, o - c0] = math.cos(ho)
                        yaw_cs[1, o - c0] = math.sin(ho)
            for c in range(c0, c1):
                if _sub > 0 or n_cars == 1:
                    break
                best = 0.0
                if I[I_ACTIVE, c] == 1 and draft_max > 0.0:
                    for o in range(c0, c1):
                        if o == c or I[I_ACTIVE, o] == 0:
                            continue
                        cho = yaw_cs[0, o - c0]
                        sho = yaw_cs[1, o - c0]
                        rx = F[F_X, c] - F[F_X, o]
                        ry = F[F_Y, c] - F[F_Y, o]
                        lon = rx * cho + ry * sho  # < 0: behind o
                        if lon >= -0.5 * P[o, P_LEN] or lon < -cfg[dy.C_DRAFT_RANGE]:
                            continue
                        lat = -rx * sho + ry * cho
                        gap = -lon - 0.5 * P[o, P_LEN]
                        f = draft_max * math.exp(-gap / cfg[dy.C_DRAFT_LEN]) * math.exp(
                            -(lat / cfg[dy.C_DRAFT_WIDTH]) ** 2)
                        if f > best:
                            best = f
                F[F_DRAFT, c] = best
            # ---- vehicles, projection, progress, track limits, walls
            for c in range(c0, c1):
                if I[I_ACTIVE, c] == 0:
                    continue
                seg_prev = I[I_SEG, c]
                if _sub == 0:
                    th = pk_h[off + seg_prev]
                    rel = F[F_YAW, c] - th
                    srel = math.sin(rel)
                    half_diag[c - c0] = 0.5 * math.hypot(P[c, P_LEN], P[c, P_WID])
                else:
                    srel = srel_of[c - c0]
                d_old = F[F_D, c]
                wl = pk_wl[off + seg_prev]
                wr = pk_wr[off + seg_prev]
                df = d_old + P[c, P_LF] * srel
                dr_ = d_old - P[c, P_LR] * srel
                mu_f = cfg[dy.C_RUNOFF_MU] if (df > wl or df < -wr) else 1.0
                mu_r = cfg[dy.C_RUNOFF_MU] if (dr_ > wl or dr_ < -wr) else 1.0
                crr = P[c, dy.P_CRR]
                crr_f = cfg[dy.C_RUNOFF_ROLL] if mu_f < 1.0 else crr
                crr_r = cfg[dy.C_RUNOFF_ROLL] if mu_r < 1.0 else crr
                dy.vehicle_substep_row(F, c, P, c, U[c, 0], U[c, 1], mu_f, mu_r, crr_f, crr_r, dt, steer_trig,
                                       c - c0)

                s_old = F[F_S, c]
                # Frenet projection (local search from the last segment)
                seg, u, d = project_packed(F[F_X, c], F[F_Y, c], I[I_SEG, c], pk_x, pk_y, off, n)
                I[I_SEG, c] = seg
                s_new = (seg + u) * ds
                dsig = s_new - s_old
                if dsig > 0.5 * length:
                    dsig -= length
                elif dsig < -0.5 * length:
                    dsig += length
                dist_old = F[F_DIST, c]
                dist = dist_old + dsig
                F[F_DIST, c] = dist
                F[F_S, c] = s_new
                F[F_D, c] = d
                F[F_PROGRESS_STEP, c] += dsig
                j = seg + 1 if seg + 1 < n else 0
                wl = pk_wl[off + seg] * (1.0 - u) + pk_wl[off + j] * u
                wr = pk_wr[off + seg] * (1.0 - u) + pk_wr[off + j] * u
                th = pk_h[off + seg]
                kap = pk_k[off + seg]

                # ---- start/finish line and sectors (forward crossings only)
                while dist >= F[F_NEXT_LINE, c]:
                    line = F[F_NEXT_LINE, c]
                    frac = (line - dist_old) / (dist - dist_old) if dist > dist_old else 1.0
                    tc = t_now + frac * dt
                    if I[I_TIMING, c] == 1 and line - F[F_LAP_D0, c] > 0.5 * length:
                        k = _add_event(ev, evn, b, max_ev, EV_SECTOR, c, -1.0, tc)
                        if k >= 0:
                            ev[b, k, E_VALUE] = tc - F[F_SECTOR_T0, c]
                            ev[b, k, E_INDEX] = nsec - 1
                        I[I_LAPS, c] += 1
                        k = _add_event(ev, evn, b, max_ev, EV_LAP, c, -1.0, tc)
                        if k >= 0:
                            ev[b, k, E_VALUE] = tc - F[F_LAP_T0, c]
                            ev[b, k, E_AUX] = I[I_LAP_VALID, c]
                            ev[b, k, E_INDEX] = I[I_LAPS, c]
                            ev[b, k, E_SA] = s_new
                        _start_lap(F, I, c, line, tc, pk_sec, t_idx, nsec, length)
                    elif I[I_TIMING, c] == 0:
                        I[I_TIMING, c] = 1
                        _start_lap(F, I, c, line, tc, pk_sec, t_idx, nsec, length)
                    F[F_NEXT_LINE, c] = line + length
                if I[I_TIMING, c] == 1:
                    while dist >= F[F_NEXT_SECTOR, c] and I[I_SECTOR, c] < nsec - 1:
                        bound = F[F_NEXT_SECTOR, c]
                        frac = (bound - dist_old) / (dist - dist_old) if dist > dist_old else 1.0
                        tc = t_now + frac * dt
                        k = _add_event(ev, evn, b, max_ev, EV_SECTOR, c, -1.0, tc)
                        if k >= 0:
                            ev[b, k, E_VALUE] = tc - F[F_SECTOR_T0, c]
                            ev[b, k, E_INDEX] = I[I_SECTOR, c]
                        I[I_SECTOR, c] += 1
                        F[F_SECTOR_T0, c] = tc
                        sec = I[I_SECTOR, c]
                        F[F_NEXT_SECTOR, c] = F[F_NEXT_LINE, c] - length + pk_sec[t_idx, sec + 1] if sec + 1 < nsec else F[F_NEXT_LINE, c]

                # ---- track limits: centre beyond an edge; corner cut if on the inside of a bend
                off_side = 0
                if d > wl:
                    off_side = 1
                elif d < -wr:
                    off_side = -1
                if off_side != 0:
                    F[F_OFF_TIME, c] += dt
                    cut = (off_side > 0 and kap > cfg[dy.C_CUT_KAPPA]) or (off_side < 0 and kap < -cfg[dy.C_CUT_KAPPA])
                    if I[I_OFF, c] == 0:
                        _track_limit_event(ev, evn, b, max_ev, EV_OFF_TRACK, c, t_now, F[F_X, c], F[F_Y, c], s_new,
                                           d, off_side)
                        I[I_OFF, c] = 1
                    if cut and I[I_OFF, c] == 1:
                        _track_limit_event(ev, evn, b, max_ev, EV_CORNER_CUT, c, t_now, F[F_X, c], F[F_Y, c], s_new,
                                           d, off_side)
                        I[I_OFF, c] = 2
                    I[I_LAP_VALID, c] = 0
                else:
                    I[I_OFF, c] = 0

                # ---- walls (half-planes in the local track frame), impulse at the deepest corner
                wall_l = pk_wall_l[off + seg] * (1.0 - u) + pk_wall_l[off + j] * u
                wall_r = pk_wall_r[off + seg] * (1.0 - u) + pk_wall_r[off + j] * u
                # (skipped when even the farthest corner cannot reach a wall: the common case)
                if abs(d) + half_diag[c - c0] >= min(wall_l, wall_r):
                    _walls(F, I, P, c, b, th, d, wall_l, wall_r, s_new, cfg, ev, evn, max_ev, t_now, dt)
                # lateral velocity relative to the track: v . n_track
                rel = F[F_YAW, c] - th
                srel = math.sin(rel)
                srel_of[c - c0] = srel
                F[F_DDOT, c] = F[F_VX, c] * srel + F[F_VY, c] * math.cos(rel)

            # ---- car-to-car contact
            if n_cars > 1:
                for a in range(c0, c1):
                    if I[I_ACTIVE, a] == 0:
                        continue
                    for o in range(a + 1, c1):
                        if I[I_ACTIVE, o] == 0:
                            continue
                        ddx = F[F_X, o] - F[F_X, a]
                        ddy = F[F_Y, o] - F[F_Y, a]
                        reach = 0.5 * (P[a, P_LEN] + P[a, P_WID] + P[o, P_LEN] + P[o, P_WID])
                        if ddx * ddx + ddy * ddy > reach * reach:
                            continue
                        depth, nx, ny, px, py = dy.obb_overlap(
                            F[F_X, a], F[F_Y, a], F[F_YAW, a], P[a, P_LEN], P[a, P_WID],
                            F[F_X, o], F[F_Y, o], F[F_YAW, o], P[o, P_LEN], P[o, P_WID])
                        if depth <= 0.0:
                            continue
                        ma = P[a, P_M]
                        mo = P[o, P_M]
                        # separate (mass-weighted: the centre of mass does not move)
                        F[F_X, a] -= nx * depth * mo / (ma + mo)
                        F[F_Y, a] -= ny * depth * mo / (ma + mo)
                        F[F_X, o] += nx * depth * ma / (ma + mo)
                        F[F_Y, o] += ny * depth * ma / (ma + mo)
                        dda = F[F_DDOT, a]
                        ddo = F[F_DDOT, o]
                        closing = dy.apply_impulse_pair(F, a, o, ma, mo, P[a, P_IZ], P[o, P_IZ], px, py, nx, ny,
                                                        cfg[dy.C_CAR_E], cfg[dy.C_CAR_MU])
                        I[I_CAR_CONTACT, a] = 1
                        I[I_CAR_CONTACT, o] = 1
                        k = _add_event(ev, evn, b, max_ev, EV_CAR, a, o, t_now)
                        if k >= 0:
                            if ev[b, k, E_AUX] == 0.0:
                                ev[b, k, E_X] = px
                                ev[b, k, E_Y] = py
                                ev[b, k, E_NX] = nx
                                ev[b, k, E_NY] = ny
                                ev[b, k, E_SA] = F[F_S, a]
                                ev[b, k, E_SB] = F[F_S, o]
                                ev[b, k, E_DA] = F[F_D, a]
                                ev[b, k, E_DB] = F[F_D, o]
                                ev[b, k, E_DDOTA] = dda
                                ev[b, k, E_DDOTB] = ddo
                            if closing > ev[b, k, E_VALUE]:
                                ev[b, k, E_VALUE] = closing
                            ev[b, k, E_AUX] += dt
                            vr2 = (F[F_VX, a] - F[F_VX, o]) ** 2
                            ev[b, k, E_SPEED2T] += vr2 * dt
            race_time[b] = t_now + dt


@nb.njit(cache=True, nogil=True)
def _start_lap(F, I, c, line, tc, pk_sec, t_idx, nsec, length):
    F[F_LAP_D0, c] = line
    F[F_LAP_T0, c] = tc
    F[F_SECTOR_T0, c] = tc
    I[I_SECTOR, c] = 0
    I[I_LAP_VALID, c] = 0 if I[I_OFF, c] != 0 else 1
    # the last sector ends at the line (handled by the line logic)
    F[F_NEXT_SECTOR, c] = line + pk_sec[t_idx, 1] if nsec > 1 else line + length


@nb.njit(cache=True, nogil=True)
def _walls(F, I, P, c, b, th, d, wall_left, wall_right, s, cfg, ev, evn, max_ev, t_now, dt):
    yaw = F[F_YAW, c]
    rel = yaw - th
    cr = math.cos(rel)
    sr = math.sin(rel)
    hl = 0.5 * P[c, P_LEN]
    hw = 0.5 * P[c, P_WID]
    # lateral offsets of the four corners in the track frame
    dmax = -1e300
    dmin = 1e300
    ox_max = 0.0
    oy_max = 0.0
    ox_min = 0.0
    oy_min = 0.0
    for sx in (-1.0, 1.0):
        for sy in (-1.0, 1.0):
            ox = sx * hl
            oy = sy * hw
            dc = d + ox * sr + oy * cr
            if dc > dmax:
                dmax = dc
                ox_max = ox
                oy_max = oy
            if dc < dmin:
                dmin = dc
                ox_min = ox
                oy_min = oy
    for side in (1, -1):
        if side == 1:
            pen = dmax - wall_left
            ox = ox_max
            oy = oy_max
        else:
            pen = -wall_right - dmin
            ox = ox_min
            oy = oy_min
        if pen <= 0.0:
            continue
        # inward wall normal (world): left wall pushes towards -n, right wall towards +n
        nx = math.sin(th) * side
        ny = -math.cos(th) * side
        F[F_X, c] += nx * pen
        F[F_Y, c] += ny * pen
        F[F_D, c] -= side * pen
        cy_ = math.cos(yaw)
        sy_ = math.sin(yaw)
        rx = ox * cy_ - oy * sy_
        ry = ox * sy_ + oy * cy_
        vxw = F[F_VX, c] * cy_ - F[F_VY, c] * sy_
        vyw = F[F_VX, c] * sy_ + F[F_VY, c] * cy_
        w = F[F_R, c]
        pvx = vxw - w * ry
        pvy = vyw + w * rx
        vn = pvx * nx + pvy * ny
        m = P[c, P_M]
        iz = P[c, P_IZ]
        speed2 = F[F_VX, c] ** 2 + F[F_VY, c] ** 2
        closing = 0.0
        if vn < 0.0:
            closing = -vn
            rn = rx * ny - ry * nx
            jn = -(1.0 + cfg[dy.C_WALL_E]) * vn / (1.0 / m + rn * rn / iz)
            tx = -ny
            ty = nx
            vt = pvx * tx + pvy * ty
            rt = rx * ty - ry * tx
            jt = -vt / (1.0 / m + rt * rt / iz)
            lim = cfg[dy.C_WALL_MU] * jn
            if jt > lim:
                jt = lim
            elif jt < -lim:
                jt = -lim
            jx = jn * nx + jt * tx
            jy = jn * ny + jt * ty
            vxw += jx / m
            vyw += jy / m
            w += (rx * jy - ry * jx) / iz
            F[F_VX, c] = vxw * cy_ + vyw * sy_
            F[F_VY, c] = -vxw * sy_ + vyw * cy_
            F[F_R, c] = w
        I[I_WALL, c] = 1
        F[F_WALL_TIME, c] += dt
        F[F_WALL_SPEED2_TIME, c] += speed2 * dt
        k = _add_event(ev, evn, b, max_ev, EV_WALL, c, -1.0, t_now)
        if k >= 0:
            if ev[b, k, E_AUX] == 0.0:
                ev[b, k, E_X] = F[F_X, c] + rx
                ev[b, k, E_Y] = F[F_Y, c] + ry
                ev[b, k, E_NX] = nx
                ev[b, k, E_NY] = ny
                ev[b, k, E_SA] = s
                ev[b, k, E_DA] = F[F_D, c]
                ev[b, k, E_INDEX] = side
            if closing > ev[b, k, E_VALUE]:
                ev[b, k, E_VALUE] = closing
            ev[b, k, E_AUX] += dt
            ev[b, k, E_SPEED2T] += speed2 * dt


@nb.njit(cache=True, nogil=True)
def _sample_rows(samples):
    """The rows of :attr:`TrackPack.samples`: x, y, heading, kappa, w_left, w_right,
    wall_left, wall_right."""
    return samples[0], samples[1], samples[2], samples[3], samples[4], samples[5], samples[6], samples[7]


@nb.njit(cache=True, nogil=True, parallel=True)
def step_all(u, F, I, U, P, race_track, race_time, pk_samples, pk_off, pk_n, pk_ds, pk_sec, pk_nsec, cfg, n_cars,
             n_sub, dt, ev, evn, max_ev):
    """Advance every race by one control step (``n_sub`` physics steps of ``dt``), races in
    parallel threads. ``u``: the controls (clipped into ``U``); ``pk_*``: the
    :class:`TrackPack` arrays. Returns the number of events, or ``-1 - c`` (nothing moved)
    when car ``c`` is the first with a non-finite control."""
    bad = _prepare_controls(u, U)
    if bad >= 0:
        return -1 - bad
    pk_x, pk_y, pk_h, pk_k, pk_wl, pk_wr, pk_wall_l, pk_wall_r = _sample_rows(pk_samples)
    n_races = race_track.shape[0]
    # races in chunks of about 8 cars: races are independent, so chunking never changes
    # results, and each call of the race kernel has a fixed cost (reference counting)
    per_chunk = max(1, 8 // n_cars)
    n_chunks = (n_races + per_chunk - 1) // per_chunk
    for k in nb.prange(n_chunks):
        _race_steps(k * n_races // n_chunks, (k + 1) * n_races // n_chunks, F, I, U, P, race_track, race_time,
                    pk_x, pk_y, pk_h, pk_k, pk_wl, pk_wr, pk_off, pk_n, pk_ds, pk_wall_l, pk_wall_r, pk_sec, pk_nsec,
                    cfg, n_cars, n_sub, dt, ev, evn, max_ev)
    return evn.sum()


@nb.njit(cache=True, nogil=True)
def step_all_serial(u, F, I, U, P, race_track, race_time, pk_samples, pk_off, pk_n, pk_ds, pk_sec, pk_nsec, cfg,
                    n_cars, n_sub, dt, ev, evn, max_ev):
    """:func:`step_all` in the calling thread (small batches: no thread hand-off)."""
    bad = _prepare_controls(u, U)
    if bad >= 0:
        return -1 - bad
    pk_x, pk_y, pk_h, pk_k, pk_wl, pk_wr, pk_wall_l, pk_wall_r = _sample_rows(pk_samples)
    _race_steps(0, race_track.shape[0], F, I, U, P, race_track, race_time, pk_x, pk_y, pk_h, pk_k, pk_wl, pk_wr,
                pk_off, pk_n, pk_ds, pk_wall_l, pk_wall_r, pk_sec, pk_nsec, cfg, n_cars, n_sub, dt, ev, evn, max_ev)
    return evn.sum()


@nb.njit(cache=True, nogil=True)
def _prepare_controls(u, out):
    """Clip controls into ``out``; returns the first car with a non-finite control, or -1."""
    for c in range(u.shape[0]):
        for k in range(2):
            v = u[c, k]
            if not math.isfinite(v):
                return c
            out[c, k] = -1.0 if v < -1.0 else (1.0 if v > 1.0 else v)
    return -1


class NonFiniteControlsError(ValueError):
    """A NaN or infinite control given to :meth:`RaceSim.step` (raised before anything
    moves): ``car`` is the first car with one, ``controls`` its ``[steer, throttle_brake]``."""

    def __init__(self, car: int, controls: list):
        super().__init__(f"controls must be finite; car {car} has {controls}")
        self.car = car
        self.controls = controls


#: Batches with fewer cars than this step in the calling thread: handing a small batch to
#: worker threads costs more than it saves (and much more on a loaded machine).
PARALLEL_MIN_CARS = 64


# ============================================================================ Python API
class StepEvents(NamedTuple):
    """Events of one control step: ``rows`` (K, NUM_E) float64 (layout in
    :mod:`racing.dynamics`, ``E_*`` columns) and the race of each row."""

    rows: np.ndarray
    race: np.ndarray
    dropped: int

    def of_type(self, typ: float) -> np.ndarray:
        return self.rows[self.rows[:, E_TYPE] == typ]


@dataclass
class LapRecord:
    lap: int  # 1-based
    time_s: float
    valid: bool
    sectors_s: list


class RaceSim:
    """``num_races`` independent races of ``cars_per_race`` cars each, stepped together.

    Args:
        tracks: one :class:`Track` for all races, or one per race.
        vehicles: one :class:`VehicleParams` (or preset name) for all cars, or one per car
            of a race (``cars_per_race`` entries), or one per car overall.
        num_races, cars_per_race: batch shape ``B x N``.
        config: :class:`SimConfig`.
        parallel: step races in numba threads (default: when there are several races and
            at least ``PARALLEL_MIN_CARS`` cars). Results are identical either way.

    Cars are indexed globally ``c = race * cars_per_race + car``. Arrays returned by the
    properties are views of the state: copy them to keep them.
    """

    def __init__(self, tracks, vehicles="gt3", num_races: int = 1, cars_per_race: int = 1,
                 config: SimConfig | None = None, parallel: bool | None = None):
        if int(num_races) < 1 or int(cars_per_race) < 1:
            raise ConfigError(f"num_races and cars_per_race must be >= 1, got {num_races} x {cars_per_race}")
        self.config = config or SimConfig()
        self.num_races = int(num_races)
        self.cars_per_race = int(cars_per_race)
        self.num_cars = self.num_races * self.cars_per_race
        # races in numba threads only when it pays: several races, enough cars, >1 thread
        self.parallel = bool(parallel) if parallel is not None else (
            self.num_races > 1 and self.num_cars >= PARALLEL_MIN_CARS and nb.get_num_threads() > 1)
        if isinstance(tracks, Track):
            tracks = [tracks] * self.num_races
        tracks = list(tracks)
        if len(tracks) != self.num_races:
            raise ConfigError(f"got {len(tracks)} tracks for {self.num_races} races")
        self._tracks: list[Track] = []
        self.race_track = np.zeros(self.num_races, dtype=np.int64)
        self._set_tracks(tracks)
        self.vehicles = self._resolve_vehicles(vehicles)
        self.P = np.ascontiguousarray(np.stack([v.to_array() for v in self.vehicles]))
        assert self.P.shape == (self.num_cars, NUM_PARAMS)
        self.masses = self.P[:, P_M].copy()
        self.F = np.zeros((NUM_F, self.num_cars))
        self.I = np.zeros((NUM_I, self.num_cars), dtype=np.int64)
        self.race_time = np.zeros(self.num_races)
        self._cfg = self.config.to_array()
        self._substeps = self.config.substeps
        self._dt = self.config.dt
        self._max_ev = int(self.config.max_events)
        self._ev = np.zeros((self.num_races, self._max_ev, NUM_E))
        self._evn = np.zeros(self.num_races, dtype=np.int64)
        self._U = np.zeros((self.num_cars, 2))
        self._no_events = StepEvents(np.zeros((0, NUM_E)), np.zeros(0, dtype=np.int64), 0)
        self.laps: list[list[LapRecord]] = [[] for _ in range(self.num_cars)]
        self._sector_buf: list[list[float]] = [[] for _ in range(self.num_cars)]
        for b in range(self.num_races):
            self.reset_race(b)

    # ------------------------------------------------------------ set-up
    def _resolve_vehicles(self, vehicles) -> list[VehicleParams]:
        if isinstance(vehicles, (str, VehicleParams)) or vehicles is None:
            return [load_vehicle(vehicles)] * self.num_cars
        vs = [load_vehicle(v) for v in vehicles]
        if len(vs) == self.cars_per_race:
            return vs * self.num_races
        if len(vs) == self.num_cars:
            return vs
        raise ConfigError(
            f"got {len(vs)} vehicles: give one, one per car of a race ({self.cars_per_race}), or one per car ({self.num_cars})"
        )

    @property
    def pack(self) -> TrackPack:
        """The packed track tables the kernels read (read-only by convention)."""
        return self._pack

    def set_tracks(self, per_race: Sequence[Track]) -> None:
        """Put every race on its own track in one repack (then reset the races)."""
        per_race = list(per_race)
        if len(per_race) != self.num_races:
            raise ConfigError(f"got {len(per_race)} tracks for {self.num_races} races")
        self._set_tracks(per_race)

    def _set_tracks(self, per_race: list[Track]):
        uniq: list[Track] = []
        for t in per_race:
            if not any(t is u for u in uniq):
                uniq.append(t)
        self._tracks = uniq
        for b, t in enumerate(per_race):
            self.race_track[b] = next(k for k, u in enumerate(uniq) if u is t)
        pk = self._pack = TrackPack.build(uniq)
        # the step kernels' track arguments, in their order (fixed until the next repack)
        self._pack_args = (pk.samples, pk.offset, pk.count, pk.ds, pk.sectors, pk.nsec)

    def track_of(self, race: int) -> Track:
        return self._tracks[int(self.race_track[race])]

    def set_track(self, race: int, track: Track) -> None:
        """Put race ``race`` on ``track`` (call :meth:`reset_race` afterwards)."""
        per_race = [self.track_of(b) for b in range(self.num_races)]
        per_race[race] = track
        self._set_tracks(per_race)

    def cars_of(self, race: int) -> range:
        return range(race * self.cars_per_race, (race + 1) * self.cars_per_race)

    def reset_race(self, race: int, s=None, d=None, speed=None, *, standing: bool = True,
                   heading_offset=None, active=None) -> None:
        """Place the cars of ``race`` and clear its clock, laps and events.

        Args:
            s: start arc length of each car [m] (default: a two-wide grid behind the line).
            d: lateral offsets [m] (default: the grid's).
            speed: initial forward speed [m/s] (default 0: standing).
            standing: lap timing runs from the start (a standing or rolling race start:
                the first lap ends at the first crossing at least half a lap away). With
                ``False`` the first crossing starts timing (a flying lap, time trials).
            heading_offset: yaw relative to the track direction [rad].
            active: which cars take part (default all).
        """
        track = self.track_of(race)
        n = self.cars_per_race
        if s is None or d is None:
            gs, gd = grid_positions(track, n)
            s = gs if s is None else s
            d = gd if d is None else d
        s = np.broadcast_to(np.asarray(s, dtype=np.float64), (n,))
        d = np.broadcast_to(np.asarray(d, dtype=np.float64), (n,))
        speed = np.broadcast_to(np.asarray(0.0 if speed is None else speed, dtype=np.float64), (n,))
        hoff = np.broadcast_to(np.asarray(0.0 if heading_offset is None else heading_offset, dtype=np.float64), (n,))
        act = np.ones(n, dtype=np.int64) if active is None else np.asarray(active, dtype=np.int64)
        for name, arr in (("s", s), ("d", d), ("speed", speed), ("heading_offset", hoff)):
            if not np.all(np.isfinite(arr)):
                raise ConfigError(f"reset_race: {name} must be finite")
        cars = np.array(self.cars_of(race))
        L = track.length
        s_mod = np.mod(s, L)
        x, y, h = track.frenet_to_xy(s_mod, d)
        F = self.F
        I = self.I
        F[:, cars] = 0.0
        I[:, cars] = 0
        F[dy.F_X, cars] = x
        F[dy.F_Y, cars] = y
        F[dy.F_YAW, cars] = h + hoff
        F[dy.F_VX, cars] = speed
        F[dy.F_S, cars] = s_mod
        F[dy.F_D, cars] = d
        # race distance relative to the line: a car 20 m behind it is at -20 m
        dist = np.where(s_mod > 0.5 * L, s_mod - L, s_mod)
        F[F_DIST, cars] = dist
        F[F_NEXT_LINE, cars] = (np.floor(dist / L) + 1.0) * L
        F[F_NEXT_SECTOR, cars] = F[F_NEXT_LINE, cars]
        F[F_LAP_D0, cars] = dist
        I[I_SEG, cars] = (np.floor(s_mod / track.ds).astype(np.int64)) % track.n
        I[I_ACTIVE, cars] = act
        I[I_LAP_VALID, cars] = 1
        I[I_TIMING, cars] = 1 if standing else 0
        if standing and track.num_sectors > 1:
            # sectors count from the line that starts the current lap (the next one for a
            # car on the grid behind it)
            sec = np.asarray(track.sector_starts_s)
            base = np.where(dist < 0, F[F_NEXT_LINE, cars], F[F_NEXT_LINE, cars] - L)
            k = np.clip(np.searchsorted(sec, dist - base, side="right") - 1, 0, len(sec) - 1)
            I[I_SECTOR, cars] = k
            F[F_NEXT_SECTOR, cars] = np.where(k + 1 < len(sec), base + sec[np.minimum(k + 1, len(sec) - 1)],
                                              F[F_NEXT_LINE, cars])
        # axle loads at rest (observations read them before the first step)
        P = self.P[cars]
        wb = P[:, dy.P_LF] + P[:, dy.P_LR]
        F[dy.F_FZF, cars] = P[:, P_M] * dy.G * P[:, dy.P_LR] / wb
        F[dy.F_FZR, cars] = P[:, P_M] * dy.G * P[:, dy.P_LF] / wb
        self.race_time[race] = 0.0
        for c in cars:
            self.laps[c] = []
            self._sector_buf[c] = []
        self._evn[race] = 0

    # ------------------------------------------------------------ stepping
    def step(self, controls) -> StepEvents:
        """Advance all races by one control step.

        Args:
            controls: ``(num_cars, 2)`` or ``(num_races, cars_per_race, 2)`` array of
                ``[steer, throttle_brake]`` in [-1, 1] (clipped). NaN or inf raises
                :class:`NonFiniteControlsError` (a ValueError).
        """
        # C-contiguous float64, so that the kernel has a single compiled signature
        u = np.ascontiguousarray(controls, dtype=np.float64).reshape(self.num_cars, 2)
        kernel = step_all if self.parallel else step_all_serial
        # the kernel clips the controls first and steps nothing if one is not finite
        n_events = kernel(u, self.F, self.I, self._U, self.P, self.race_track, self.race_time, *self._pack_args,
                          self._cfg, self.cars_per_race, self._substeps, self._dt, self._ev, self._evn, self._max_ev)
        if n_events == 0:  # the common case: nothing happened
            return self._no_events
        if n_events < 0:
            bad = -1 - n_events
            raise NonFiniteControlsError(bad, u[bad].tolist())
        return self._collect_events()

    def _collect_events(self) -> StepEvents:
        if self.num_races == 1:  # the common small case, without the per-race bookkeeping
            n = int(self._evn[0])
            kept = min(n, self._max_ev)
            rows = self._ev[0, :kept].copy()
            race = np.zeros(kept, dtype=np.int64)
            dropped = n - kept
        else:
            counts = np.minimum(self._evn, self._max_ev)
            dropped = int(np.sum(self._evn - counts))
            # the first counts[b] rows of each race b, races in order
            rows = self._ev[np.arange(self._max_ev) < counts[:, None]]
            race = np.repeat(np.arange(self.num_races), counts)
        # lap bookkeeping (sector times go with the lap they belong to)
        types = rows[:, E_TYPE].tolist()  # a list scan is far cheaper than masks on a few rows
        if EV_LAP in types or EV_SECTOR in types:
            for r, typ in zip(rows, types):
                if typ == EV_SECTOR:
                    self._sector_buf[int(r[E_A])].append(float(r[E_VALUE]))
                elif typ == EV_LAP:
                    c = int(r[E_A])
                    self.laps[c].append(LapRecord(int(r[E_INDEX]), float(r[E_VALUE]), bool(r[E_AUX]),
                                                  self._sector_buf[c]))
                    self._sector_buf[c] = []
        return StepEvents(rows, race, dropped)

    # ------------------------------------------------------------ views
    @property
    def x(self):
        return self.F[F_X]

    @property
    def y(self):
        return self.F[F_Y]

    @property
    def yaw(self):
        return self.F[F_YAW]

    @property
    def speed(self) -> np.ndarray:
        """[m/s]"""
        return np.hypot(self.F[F_VX], self.F[F_VY])

    @property
    def s(self):
        return self.F[F_S]

    @property
    def d(self):
        return self.F[F_D]

    @property
    def dist(self):
        """Race distance [m]: signed progress from the start line."""
        return self.F[F_DIST]

    @property
    def laps_completed(self):
        return self.I[I_LAPS]

    @property
    def off_track(self) -> np.ndarray:
        return self.I[I_OFF] != 0

    def positions(self) -> np.ndarray:
        """Race order ``(num_races, cars_per_race)``: position 1 = furthest race distance
        (ties go to the lower car index); inactive cars rank last."""
        dist = self.F[F_DIST].reshape(self.num_races, self.cars_per_race)
        act = self.I[I_ACTIVE].reshape(self.num_races, self.cars_per_race)
        key = np.where(act == 1, dist, -np.inf)
        order = np.argsort(-key, axis=1, kind="stable")
        pos = np.empty_like(order)
        rows = np.arange(self.num_races)[:, None]
        pos[rows, order] = np.arange(1, self.cars_per_race + 1)[None, :]
        return pos

    def best_lap(self, car: int, valid_only: bool = True) -> float | None:
        times = [lap.time_s for lap in self.laps[car] if lap.valid or not valid_only]
        return min(times) if times else None


def grid_positions(track: Track, n: int, *, first_gap_m: float = 8.0, row_gap_m: float = 8.0):
    """A two-wide staggered grid behind the start line: (s, d) arrays for ``n`` cars."""
    w = float(min(track.w_left[0], track.w_right[0]))
    lateral = min(0.45 * w, 3.0)
    k = np.arange(n)
    s = track.length - first_gap_m - k * row_gap_m
    d = np.where(k % 2 == 0, lateral, -lateral) if n > 1 else np.zeros(n)
    return np.mod(s, track.length), d

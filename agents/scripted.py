"""Scripted opponents: reference-line drivers with named skill levels and race-craft.

A :class:`ScriptedDriver` drives any number of cars of a :class:`racing.sim.RaceSim` at
once (numpy over all cars; no torch, so a game runtime can reuse it). It follows the
racing line of the reference lap (:func:`racing.reference.reference_lap`).

**The plan.** Per (track, vehicle) the driver recomputes the speed along the reference
line with its own model of the simulator (:func:`drivable_profile`): corner speeds capped
at ``skill x`` the reference speed and at :data:`LATERAL_GRIP_MARGIN` of the grip, then a
backward (braking) and a forward (accelerating) pass with the simulator's brake balance,
ABS, brake-force distribution, traction control, load transfer, the friction circle with
the margins below, and the tyres' *induced drag* (a cornering force ``F_y`` at slip angle
``a`` costs ``F_y sin a`` along the path).

Where the plan and the reference lap disagree (measured on the built-in and random
circuits; with the reference's own model this plan reproduces its lap times within 0.2%):

* the reference leaves out the induced drag: +0.2 to +1.4% of lap time;
* the driver's margins (below): +0.5 to +0.9%, and tracking: +0.1 to +0.9%.

(The reference also once let the rear brake take the grip its cornering leaves, which the
simulator's fixed brake-force cap does not; it now stops the pedal there too.) The
``alien`` laps the built-in circuits within about 2-3% of the reference lap, GT3 and road
car alike (``tests/test_scripted.py``).

**Tracking** (every car at once, each control step):

* Steering = feed-forward + LQR. The feed-forward is the steady-state angle for the line's
  curvature where the command will act: ``atan(L kappa)`` plus the front minus the rear
  slip angle that carry the cornering forces with the present axle loads (inverse Pacejka).
  The feedback is a discrete LQR on the linearised lateral error dynamics (Rajamani,
  *Vehicle Dynamics and Control*, eq. 2.45: offset, its rate, heading error, its rate) with
  the tyres' *tangent* cornering stiffness at their present slip, discretised with the
  control hold; the Riccati recursion is warm-started per car. Trail-braking near the
  rear's limit makes the linearised car statically unstable, and the gain follows. The
  front tyres are never steered past the peak of their force curve.
* Speed: the plan's acceleration ``v dv/ds`` as feed-forward, proportional and integral
  terms on the speed error, resistances (drag, rolling, induced drag), converted to a
  throttle/brake command through the power, drive-force and brake limits and capped by
  the grip each axle has left after its cornering force (the rear's with the load the
  braking moves off it). The pedal is rate-limited while cornering: a step from throttle
  to brake moves the axle loads at once and snaps the car sideways at the limit.

**Race-craft** (cars of the same race):

* Following: the speed target never exceeds what stops the car :data:`MIN_GAP_M` plus
  :data:`HEADWAY_S` of its speed behind any car ahead whose body lies in the lateral band
  between the car and its target line (braking at :data:`FOLLOW_DECEL_FRACTION` of the grip
  the cornering leaves, the leader's own braking anticipated): a car braking hard ahead is
  not rear-ended.
* Overtaking: held up by a car ahead on its line (closing on it, or following it) whose
  speed is :data:`PASS_MIN_GAIN_MPS` below the own plan, the driver moves to a line beside
  it, one separation (half widths plus :data:`SIDE_CLEARANCE_M`) to the side with room (the
  one nearer its own line when both have), holds it until :data:`PASS_CLEAR_M` clear ahead,
  then rejoins the racing line. Passes start only above :data:`PASS_MIN_SPEED_MPS`, after
  :data:`PASS_START_DELAY_S` of race time and where the next seconds need little cornering
  (:data:`PASS_MAX_LATERAL_G`); one not alongside after :data:`PASS_TIMEOUT_S` is given up
  (where that is safe) and the next waits :data:`PASS_COOLDOWN_S`. Off the line the driver
  corners at the offset path's speed (smaller radius on the inside) times
  :data:`OFFSET_LINE_MARGIN`; the target line moves sideways at most at
  :data:`OFFSET_RATE_MPS` and :data:`OFFSET_ACCEL_MPS2`.
* Giving room: the driver never aims closer than one separation to a car alongside (or up to
  :data:`ROOM_BEHIND_M` behind: no cutting across a car's bow); a car already closer holds
  its lateral position; it never leaves the track for it: without room it drops behind. It
  never aims at another car.
* Recovery: a car pointing more than :data:`RECOVERY_HEADING_RAD` off its line (spun)
  steers by geometry towards the line ahead with little throttle.

Race-craft is good for one-on-one passes and for fields of similar skill; in mixed fields
on tight circuits there is still some contact and some track-limit strikes (see the tests).

**Skill**: ``rookie`` 0.85, ``amateur`` 0.90, ``pro`` 0.95, ``alien`` 1.0 (the limit), or
any number in (0, 1]. Below ``alien`` every car gets seeded, smooth imperfections along
the lap (an offset of its line, earlier braking points, a varying speed factor), so races
are not processions. The same seed gives the same race, bit for bit.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np

from racing.dynamics import (
    F_ALPHAF, F_ALPHAR, F_AX, F_D, F_DRAFT, F_FZF, F_FZR, F_R, F_S, F_THROTTLE_CMD, F_VX, F_VY, F_YAW,
    I_ACTIVE, P_ABF, P_ABS, P_BB, P_BF, P_BR, P_C, P_CDA, P_CLA, P_CRR, P_E, P_EBD, P_FBRAKE, P_FDRIVE,
    P_H, P_IZ, P_LEN, P_LF, P_LR, P_M, P_MU, P_POW, P_RGR, P_RHO, P_SMAX, P_WID,
)
from racing.errors import ConfigError
from racing.vehicle import G

#: Named skill levels: the fraction of the reference speed each drives at.
SKILLS: dict[str, float] = {"rookie": 0.85, "amateur": 0.90, "pro": 0.95, "alien": 1.0}

# --- the plan (margins below the simulator's limits)
LATERAL_GRIP_MARGIN = 1.0  # [-] share of the grip the line's corners are driven at
COMBINED_GRIP_MARGIN = 0.98  # [-] share of each axle's friction circle throttle and brakes may use
REAR_BRAKE_MARGIN = 0.95  # [-] further share for the rear when braking in a corner: past it the
#                           unloaded rear slides and the car spins (GT3 on random circuits)
REAR_SLIP_GUARD = 0.9  # [-] throttle fades out as the rear slip angle nears this share of its peak

# --- tracking
LATENCY_S = 0.08  # [s] feed-forward anticipation: half the 0.1 s hold plus the steering rate lag
SPEED_PREVIEW_S = 0.2  # [s] the acceleration feed-forward is read this far ahead (pedal, load lag)
SPEED_GAIN = 3.0  # [1/s] desired acceleration per m/s of speed error
SPEED_INTEGRAL_GAIN = 1.0  # [1/s^2] integral of the speed error (drag the model misses)
SPEED_INTEGRAL_MAX = 1.5  # [m/s^2]
PEDAL_RATE_PER_S = 6.0  # [1/s] largest change of the throttle/brake command at the grip limit ...
PEDAL_RATE_STRAIGHT_PER_S = 20.0  # [1/s] ... and driving straight
LQR_Q = (1.0 / 0.3**2, 1.0 / 1.0**2, 1.0 / 0.05**2, 1.0 / 0.1**2)  # [1/m^2, s^2/m^2, 1/rad^2, s^2/rad^2]
LQR_R = 1.0 / 0.02**2  # [1/rad^2] steering
LQR_ITERS = 3  # Riccati steps per control step (warm-started; 60 for a car's first step)
FF_TRANSFER = 0.5  # [-] share of the load transfer the steering feed-forward accounts for
MIN_STIFFNESS = 0.1  # [-] floor of the tangent cornering stiffness, share of the linear one
SLIP_DEMAND_MAX = 0.98  # [-] largest share of an axle's grip the steering feed-forward asks for

RECOVERY_HEADING_RAD = 0.8  # [rad] course this far off the line's heading: recovery steering ...
RECOVERY_THROTTLE = 0.3  # [-] ... with at most this throttle

# --- race-craft
MIN_GAP_M = 2.0  # [m] bumper-to-bumper gap kept to a car ahead ...
HEADWAY_S = 0.25  # [s] ... plus this time at the own speed
FOLLOW_DECEL_FRACTION = 0.7  # [-] of mu g: braking assumed when sizing the gap to a car ahead
SIDE_CLEARANCE_M = 1.2  # [m] lateral clearance kept to a car alongside (between bodies)
ALONGSIDE_MARGIN_M = 1.0  # [m] cars overlap lengthwise within this are alongside
ROOM_BEHIND_M = 5.0  # [m] room is also left to a car this close behind (bumper to bumper)
EDGE_MARGIN_M = 0.8  # [m] from the car's side to the track edge on an offset line
PASS_MIN_GAIN_MPS = 1.0  # [m/s] a car ahead this much slower than the own plan is passed ...
PASS_MIN_CLOSING_MPS = 0.3  # [m/s] ... when closing on it at least this fast (or following it) ...
PASS_START_GAP_M = 6.0  # [m] ... from this far behind the following distance ...
PASS_START_S = 1.0  # [s] ... plus this time at the closing speed, ...
PASS_MIN_SPEED_MPS = 15.0  # [m/s] ... above this speed ...
PASS_START_DELAY_S = 10.0  # [s] ... after this much race time (the field sorts itself out) ...
PASS_MAX_LATERAL_G = 0.5  # [-] ... where the next seconds need at most this share of mu g
PASS_MAX_OFFSET_M = 4.5  # [m] largest step off the own line for a pass
PASS_CLEAR_M = 3.0  # [m] a pass ends this far clear ahead of the passed car
PASS_TIMEOUT_S = 8.0  # [s] a pass not alongside after this long is given up ...
PASS_GIVE_UP_M = 3.0  # [m] ... or when the gap grows this much beyond where passes start ...
PASS_COOLDOWN_S = 10.0  # [s] ... and the next one waits this long
OFFSET_RATE_MPS = 2.5  # [m/s] lateral speed of the target line when changing lines ...
OFFSET_ACCEL_MPS2 = 1.5  # [m/s^2] ... and its lateral acceleration
OFFSET_LINE_MARGIN = 0.93  # [-] speed factor while off the racing line ...
SETTLED_ERROR_M = 1.0  # [m] ... or farther than this from the target line
LOOK_TIMES_S = (0.5, 1.0, 1.5, 2.5)  # [s] preview of the offset path's corners

# --- imperfection (below alien; amplitudes at rookie, scaled by (1 - skill) / 0.15)
NOISE_WAVELENGTHS_M = (311.0, 487.0, 743.0)  # [m] smooth noise along the lap (incommensurate)
LINE_NOISE_M = 0.5  # [m] offset of the line
SPEED_NOISE = 0.02  # [-] speed factor
BRAKE_EARLY_M = 15.0  # [m] braking points moved earlier by up to this


def resolve_skill(skill) -> float:
    """The speed fraction of a skill: a name in :data:`SKILLS` or a number in (0, 1]."""
    if isinstance(skill, str):
        key = skill.strip().lower()
        if key in SKILLS:
            return SKILLS[key]
        try:
            value = float(key)
        except ValueError:
            raise ConfigError(f"unknown skill '{skill}': use one of {', '.join(SKILLS)} or a number in (0, 1]") from None
    elif isinstance(skill, numbers.Real) and not isinstance(skill, bool):
        value = float(skill)
    else:
        raise ConfigError(f"skill must be a name ({', '.join(SKILLS)}) or a number in (0, 1], got {skill!r}")
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ConfigError(f"skill must be in (0, 1] (1 = alien, the limit), got {value}")
    return value


# ============================================================================ numerics
def _wrap(a):
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def _inverse_magic(y, b, c, e):
    """Slip angle [rad] in [0, peak] where the normalised magic formula equals ``y`` in
    [0, 1) (vectorised; Newton on ``phi = B a - E (B a - atan(B a))`` when ``E != 0``)."""
    phi = np.tan(np.arcsin(np.clip(y, 0.0, 0.999999)) / c)
    ba = phi.copy()
    for _ in range(4):  # exact in one step for E = 0
        f = ba - e * (ba - np.arctan(ba)) - phi
        fp = 1.0 - e * (1.0 - 1.0 / (1.0 + ba * ba))
        ba = ba - f / fp
    return ba / b


def _magic_slope(alpha, b, c, e):
    """Slope of the normalised magic formula at slip angle ``alpha`` [1/rad] (vectorised;
    negative past the peak)."""
    ba = b * alpha
    phi = ba - e * (ba - np.arctan(ba))
    dphi = b - e * (b - b / (1.0 + ba * ba))
    return np.cos(c * np.arctan(phi)) * c / (1.0 + phi * phi) * dphi


def _zoh(a, b, dt):
    """Zero-order-hold discretisation of ``x' = A x + B u`` for a batch: ``(A_d, B_d)``
    from the matrix exponential of ``[[A, B], [0, 0]] dt`` (scaling and squaring)."""
    nb, n, _ = a.shape
    m = np.zeros((nb, n + 1, n + 1))
    m[:, :n, :n] = a * dt
    m[:, :n, n] = b * dt
    norm = float(np.max(np.sum(np.abs(m), axis=2)))
    k = max(0, int(math.ceil(math.log2(max(norm, 1e-12)))) + 1)
    m /= 2.0**k
    e = np.broadcast_to(np.eye(n + 1), m.shape).copy()
    term = e.copy()
    for j in range(1, 10):
        term = term @ m / j
        e += term
    for _ in range(k):
        e = e @ e
    return e[:, :n, :n], e[:, :n, n]


def _riccati(ad, bd, q, r, p, iters):
    """``iters`` steps of the discrete Riccati recursion from ``p`` (batched); returns the
    new cost matrix and the state-feedback gain ``K`` (``u = -K x``)."""
    at = np.transpose(ad, (0, 2, 1))
    for _ in range(iters):
        pb = p @ bd[:, :, None]
        s_ = r + np.sum(bd * pb[:, :, 0], axis=1)
        pa = p @ ad
        k = np.sum(bd[:, :, None] * pa, axis=1) / s_[:, None]
        p = q + at @ pa - (at @ pb) @ k[:, None, :]
        p = 0.5 * (p + np.transpose(p, (0, 2, 1)))
    pb = p @ bd[:, :, None]
    s_ = r + np.sum(bd * pb[:, :, 0], axis=1)
    k = np.sum(bd[:, :, None] * (p @ ad), axis=1) / s_[:, None]
    return p, k


def _piecewise_inverse(y, xs, ys):
    """Per row ``k``: the ``x`` where the non-decreasing piecewise-linear ``(xs[k], ys[k])``
    reaches ``y[k]`` (vectorised over rows; clamped to the ends)."""
    out = np.full(y.shape, xs[:, -1])
    done = np.zeros(y.shape, dtype=bool)
    for j in range(xs.shape[1] - 1):
        x0, x1, y0, y1 = xs[:, j], xs[:, j + 1], ys[:, j], ys[:, j + 1]
        hit = ~done & (y <= y1)
        frac = np.where(y1 > y0, (y - y0) / np.where(y1 > y0, y1 - y0, 1.0), 1.0)
        out = np.where(hit, x0 + np.clip(frac, 0.0, 1.0) * (x1 - x0), out)
        done |= hit
    return out


# ============================================================================ the plan
def _slip_for(y, b, c, e):
    """Scalar :func:`_inverse_magic`."""
    phi = math.tan(math.asin(min(max(y, 0.0), 0.999999)) / c)
    ba = phi
    if e != 0.0:
        for _ in range(4):
            ba -= (ba - e * (ba - math.atan(ba)) - phi) / (1.0 - e * (1.0 - 1.0 / (1.0 + ba * ba)))
    return ba / b


def _axle_state(vehicle, v, kabs):
    """Axle loads without load transfer, steady cornering force per axle and resistance
    [N] at speed ``v`` on curvature ``|kappa|`` (scalars). The resistance holds drag,
    rolling resistance and the tyres' induced drag ``F_y sin(a)`` per axle."""
    m = vehicle.mass_kg
    wb = vehicle.wheelbase_m
    q = 0.5 * vehicle.air_density_kgpm3 * v * v
    down = q * vehicle.lift_area_m2
    fz0f = m * G * vehicle.lr_m / wb + down * vehicle.aero_balance_front
    fz0r = m * G * vehicle.lf_m / wb + down * (1.0 - vehicle.aero_balance_front)
    ay = v * v * kabs
    fyf = m * ay * vehicle.lr_m / wb
    fyr = m * ay * vehicle.lf_m / wb
    resist = q * vehicle.drag_area_m2 + vehicle.rolling_resistance * (m * G + down)
    if fyf > 0.0:
        a_f = _slip_for(fyf / (vehicle.mu * fz0f), vehicle.pacejka_b_front, vehicle.pacejka_c, vehicle.pacejka_e)
        a_r = _slip_for(fyr / (vehicle.mu * vehicle.rear_grip_ratio * fz0r), vehicle.pacejka_b_rear,
                        vehicle.pacejka_c, vehicle.pacejka_e)
        resist += fyf * math.sin(a_f) + fyr * math.sin(a_r)
    return fz0f, fz0r, fyf, fyr, resist


def lateral_speed_limit(kappa, vehicle, grip_fraction: float) -> np.ndarray:
    """Largest speed [m/s] at which curvature ``kappa`` needs at most ``grip_fraction`` of
    each axle's grip (downforce included; bisection), capped at the top speed."""
    kabs = np.abs(np.asarray(kappa, dtype=np.float64))
    lo = np.zeros_like(kabs)
    hi = np.full_like(kabs, vehicle.top_speed_mps)
    m = vehicle.mass_kg
    wb = vehicle.wheelbase_m
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        down = 0.5 * vehicle.air_density_kgpm3 * mid * mid * vehicle.lift_area_m2
        ay = mid * mid * kabs
        ok = ((m * ay * vehicle.lr_m / wb <= grip_fraction * vehicle.mu
               * (m * G * vehicle.lr_m / wb + down * vehicle.aero_balance_front))
              & (m * ay * vehicle.lf_m / wb <= grip_fraction * vehicle.mu * vehicle.rear_grip_ratio
                 * (m * G * vehicle.lf_m / wb + down * (1.0 - vehicle.aero_balance_front))))
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return lo


def _decel(vehicle, v, kabs, mu_f, mu_r_brake):
    """Largest deceleration [m/s^2] the driver brakes with at ``v`` on ``|kappa|``, drag
    and rolling resistance included. The pedal force splits by the fixed brake balance;
    each axle keeps the grip its cornering force needs (with the load the deceleration moves
    to the front, fixed point); the simulator's ABS and brake-force distribution cap each
    axle, and the pedal may run an axle into its ABS cap where that leaves enough cornering grip
    while the rear brakes harder."""
    fz0f, fz0r, fyf, fyr, resist = _axle_state(vehicle, v, kabs)
    m = vehicle.mass_kg
    k_tr = m * vehicle.cg_height_m / vehicle.wheelbase_m
    bb = vehicle.brake_balance_front
    total = vehicle.max_brake_force_n
    mu_true_f = vehicle.mu
    mu_true_r = vehicle.mu * vehicle.rear_grip_ratio
    for _ in range(3):
        dec = (total + resist) / m
        fzf = fz0f + k_tr * dec
        fzr = max(fz0r - k_tr * dec, 0.05 * m * G)
        front = math.sqrt(max((mu_f * fzf) ** 2 - fyf * fyf, 0.0))
        rear = math.sqrt(max((mu_r_brake * fzr) ** 2 - fyr * fyr, 0.0))
        abs_f = vehicle.abs_limit * mu_true_f * fzf  # the simulator's caps per axle
        ebd_r = vehicle.rear_brake_limit * mu_true_r * fzr
        fb = vehicle.max_brake_force_n
        if abs_f > front:  # the ABS cap would eat into the cornering grip: the pedal stops
            fb = min(fb, front / max(bb, 1e-3))
        if ebd_r > rear:
            fb = min(fb, rear / max(1.0 - bb, 1e-3))
        total = min(bb * fb, abs_f) + min((1.0 - bb) * fb, ebd_r)
    return (total + resist) / m


def _accel(vehicle, v, kabs, mu_f, mu_r):
    """Largest acceleration [m/s^2] the driver asks for at ``v`` on ``|kappa|``: rear-wheel
    drive within the power, drive-force, traction-control and rear-grip limits (with the
    load moved to the rear); the unloaded front keeps its cornering force."""
    fz0f, fz0r, fyf, fyr, resist = _axle_state(vehicle, v, kabs)
    m = vehicle.mass_kg
    k_tr = m * vehicle.cg_height_m / vehicle.wheelbase_m
    drive_max = min(vehicle.max_drive_force_n, vehicle.max_power_w / max(v, 1.0))
    ax_front = (fz0f - fyf / mu_f) / k_tr if k_tr > 0 else math.inf
    a = 0.0
    for _ in range(3):
        fzr = fz0r + k_tr * max(a, 0.0)
        rear = math.sqrt(max((mu_r * fzr) ** 2 - fyr * fyr, 0.0))
        cap_tc = vehicle.abs_limit * vehicle.mu * vehicle.rear_grip_ratio * fzr
        a = min((min(drive_max, rear, cap_tc) - resist) / m, ax_front)
    return a


def drivable_profile(v_cap, kappa, seg, vehicle, brake_fraction: float = 1.0) -> np.ndarray:
    """The driver's speed profile [m/s] under ``v_cap`` along a closed line of curvature
    ``kappa`` [1/m], with ``seg[i]`` the path length from sample ``i`` to ``i + 1`` [m]:
    backward pass braking with :func:`_decel`, forward pass accelerating with
    :func:`_accel` (Heun steps in ``v^2``, two laps each so the loop settles). Braking uses
    ``brake_fraction`` of :func:`_decel` (lower skills brake earlier and softer)."""
    v = np.asarray(v_cap, dtype=np.float64).tolist()
    kabs = np.abs(kappa).tolist()
    seg = np.asarray(seg).tolist()
    n = len(v)
    mu_f = COMBINED_GRIP_MARGIN * vehicle.mu
    mu_r = COMBINED_GRIP_MARGIN * vehicle.mu * vehicle.rear_grip_ratio
    mu_rb = REAR_BRAKE_MARGIN * mu_r
    for _ in range(2):
        for i in range(n - 1, -1, -1):
            j = i + 1 if i + 1 < n else 0
            a0 = brake_fraction * _decel(vehicle, v[j], kabs[i], mu_f, mu_rb)
            vp = math.sqrt(v[j] ** 2 + 2.0 * a0 * seg[i])
            vb = math.sqrt(v[j] ** 2 + (a0 + brake_fraction * _decel(vehicle, vp, kabs[i], mu_f, mu_rb)) * seg[i])
            if vb < v[i]:
                v[i] = vb
    for _ in range(2):
        for i in range(n):
            j = i + 1 if i + 1 < n else 0
            a0 = _accel(vehicle, v[i], kabs[i], mu_f, mu_r)
            vp = math.sqrt(max(v[i] ** 2 + 2.0 * a0 * seg[i], 0.0))
            vf = math.sqrt(max(v[i] ** 2 + (a0 + _accel(vehicle, vp, kabs[i], mu_f, mu_r)) * seg[i], 0.0))
            if vf < v[j]:
                v[j] = vf
    return np.array(v)


class Plan:
    """What one driver follows on one track with one vehicle, at the track's samples
    ``s_i = i ds``: the line's offset ``d`` [m], its curvature ``kappa`` [1/m] and heading
    relative to the track ``psi`` [rad], the driver's speed ``v`` [m/s] and acceleration
    ``acc`` [m/s^2] along it, and the reference speed ``v_ref`` [m/s].

    The speed is ``skill x v_ref`` capped by the lateral limit of the line's curvature, then
    :func:`drivable_profile` with braking at ``skill^2`` of the driver's braking (lower
    skills brake earlier and softer)."""

    def __init__(self, track, vehicle, ref, skill: float):
        s = track.s
        n = track.n
        d = np.asarray(ref.offset_at(s), dtype=np.float64)
        v_ref = np.asarray(ref.speed_at(s), dtype=np.float64)
        if d.shape != (n,) or v_ref.shape != (n,) or not (np.all(np.isfinite(d)) and np.all(np.isfinite(v_ref))):
            raise ConfigError(f"reference line for '{track.name}' must give a finite offset and speed at every sample")
        h = track.heading
        x = track.x - np.sin(h) * d
        y = track.y + np.cos(h) * d
        seg = np.hypot(np.roll(x, -1) - x, np.roll(y, -1) - y)  # path length from sample i to i+1 [m]
        # the line usually comes on a coarser grid than the track's (offsets linear in
        # between, kinks at its points): heading from differences over a few metres, and
        # the reference's own curvature where it gives one
        k = max(1, int(round(2.0 / track.ds)))
        psi = np.arctan2(np.roll(y, -k) - np.roll(y, k), np.roll(x, -k) - np.roll(x, k))
        if getattr(ref, "kappa", None) is not None and getattr(ref, "s_m", None) is not None:
            ks = np.asarray(ref.s_m, dtype=np.float64)
            kap = np.interp(s, np.append(ks, track.length), np.append(ref.kappa, ref.kappa[0]))
        else:
            w = 2 * k
            ahead = np.arctan2(np.roll(y, -w - 1) - np.roll(y, -w), np.roll(x, -w - 1) - np.roll(x, -w))
            behind = np.arctan2(np.roll(y, w - 1) - np.roll(y, w), np.roll(x, w - 1) - np.roll(x, w))
            kap = _wrap(ahead - behind) / sum(np.roll(seg, j) for j in range(-w, w))
        v = drivable_profile(np.minimum(skill * v_ref, lateral_speed_limit(kap, vehicle, LATERAL_GRIP_MARGIN)),
                             kap, seg, vehicle, brake_fraction=skill**2)
        v2 = v * v
        self.d = d
        self.kappa = kap
        self.psi = _wrap(psi - h)
        self.v = v
        self.acc = (np.roll(v2, -1) - np.roll(v2, 1)) / (2.0 * (seg + np.roll(seg, 1)))
        self.v_ref = v_ref
        self.seg = seg
        self.track_heading = np.mod(h, 2 * np.pi)
        self.w_left = np.asarray(track.w_left)
        self.w_right = np.asarray(track.w_right)

    @property
    def lap_time_s(self) -> float:
        """Flying-lap time of the plan [s]."""
        return float(np.sum(2.0 * self.seg / (self.v + np.roll(self.v, -1))))


# ============================================================================ the driver
class ScriptedDriver:
    """Scripted drivers for any set of cars of a :class:`racing.sim.RaceSim`.

    Args:
        skill: ``rookie``, ``amateur``, ``pro``, ``alien`` (see :data:`SKILLS`) or a
            number in (0, 1]: the fraction of the reference speed. Bad values raise
            :class:`racing.errors.ConfigError`.
        seed: seeds the imperfections (only below ``alien``): a car's noise depends on
            the seed and its global index only.
        reference: ``(track, vehicle) -> ref`` giving the line to follow (an object with
            ``offset_at(s)`` [m] and ``speed_at(s)`` [m/s] of the centreline arc length,
            and optionally ``s_m``/``kappa`` arrays); default
            :func:`racing.reference.reference_lap`.
        racecraft: False drives the line alone, ignoring other cars (time trials).

    Call it as ``driver(sim, cars) -> controls (len(cars), 2)`` once per control step. One
    driver can drive cars of many races; drivers of different skills can share a sim (each
    drives its own cars and sees all the others). Plans are computed once per (track,
    vehicle) and cached on the driver; per-car state (controller memory, passes) lives on
    the driver too: call :meth:`reset` after :meth:`RaceSim.reset_race`.
    """

    def __init__(self, skill="pro", seed: int = 0, *, reference: Callable | None = None, racecraft: bool = True):
        self.skill = resolve_skill(skill)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.racecraft = bool(racecraft)
        self._reference = reference
        self._plans: dict = {}
        self._pack_key = None
        self._pack: dict = {}
        self._sim = None
        self._st: dict = {}

    # ------------------------------------------------------------------ plans
    def plan(self, track, vehicle) -> Plan:
        """The (cached) :class:`Plan` for ``track`` and ``vehicle``."""
        key = (id(track), id(vehicle))
        entry = self._plans.get(key)
        if entry is None:
            if self._reference is None:
                from racing.reference import reference_lap

                self._reference = reference_lap
            entry = (track, vehicle, Plan(track, vehicle, self._reference(track, vehicle), self.skill))
            self._plans[key] = entry  # the entry keeps track and vehicle alive: ids stay unique
        return entry[2]

    def _packed(self, sim, cars):
        """Per-car plan arrays packed for vectorised lookup (rebuilt when tracks change)."""
        races = cars // sim.cars_per_race
        key = (id(sim), cars.tobytes(), tuple(id(sim.track_of(int(b))) for b in np.unique(races)))
        if self._pack_key == key:
            return self._pack
        plans, index, pid = [], {}, np.zeros(len(cars), dtype=np.int64)
        for k, c in enumerate(cars):
            track = sim.track_of(int(races[k]))
            veh = sim.vehicles[int(c)]
            key_p = (id(track), id(veh))
            if key_p not in index:
                index[key_p] = len(plans)
                plans.append((track, self.plan(track, veh)))
            pid[k] = index[key_p]
        counts = np.array([t.n for t, _ in plans], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        cat = lambda name: np.concatenate([getattr(p, name) for _, p in plans])  # noqa: E731
        self._pack = dict(
            off=offsets[pid], n=counts[pid], ds=np.array([t.ds for t, _ in plans])[pid],
            length=np.array([t.length for t, _ in plans])[pid],
            d=cat("d"), v=cat("v"), kappa=cat("kappa"), psi=cat("psi"), acc=cat("acc"),
            th=cat("track_heading"), wl=cat("w_left"), wr=cat("w_right"),
        )
        self._pack_key = key
        return self._pack

    @staticmethod
    def _lookup(pk, name, s, angle=False, rows=None):
        """Linear interpolation of packed array ``name`` at arc length ``s`` (periodic);
        ``rows`` picks the cars' plans when ``s`` is 2-D (cars x points)."""
        off, n, ds = pk["off"], pk["n"], pk["ds"]
        if s.ndim == 2:
            off, n, ds = off[:, None], n[:, None], ds[:, None]
        arr = pk[name]
        f = s / ds
        fl = np.floor(f)
        u = f - fl
        i = fl.astype(np.int64) % n
        j = (i + 1) % n
        a = arr[off + i]
        b = arr[off + j]
        if angle:
            return a + _wrap(b - a) * u
        return a * (1.0 - u) + b * u

    # ------------------------------------------------------------------ per-car state
    def _state(self, sim):
        if self._sim is not sim or not self._st or self._st["integ"].shape[0] != sim.num_cars:
            self._sim = sim
            nc = sim.num_cars
            phases = np.empty((nc, 3, len(NOISE_WAVELENGTHS_M)))
            for c in range(nc):
                phases[c] = np.random.default_rng([self.seed, c]).uniform(0.0, 2.0 * np.pi, phases.shape[1:])
            self._st = dict(ric=np.full((nc, 4, 4), np.nan), integ=np.zeros(nc), d_off=np.zeros(nc), d_off_rate=np.zeros(nc),
                            pass_target=np.full(nc, -1, dtype=np.int64), pass_side=np.zeros(nc),
                            pass_time=np.zeros(nc), pass_cool=np.zeros(nc), lost=np.zeros(nc, dtype=bool),
                            phases=phases)
        return self._st

    @property
    def name(self) -> str:
        return f"scripted:{self.skill:g}"

    def reset(self, sim=None, cars=None, seed: int | None = None) -> None:
        """Forget the controller memory and passes of ``cars`` (default: all), e.g. after
        :meth:`racing.sim.RaceSim.reset_race`; a new ``seed`` re-draws the imperfections.
        (The ``sim`` argument is accepted for the :class:`agents.drivers.Driver` protocol.)"""
        if seed is not None and int(seed) != self.seed:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
                raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
            self.seed = int(seed)
            self._sim = None  # phases are re-drawn on the next call
            self._st = {}
            return
        if not self._st:
            return
        idx = slice(None) if cars is None else np.asarray(cars, dtype=np.int64)
        self._st["ric"][idx] = np.nan
        self._st["integ"][idx] = 0.0
        self._st["d_off"][idx] = 0.0
        self._st["d_off_rate"][idx] = 0.0
        self._st["pass_target"][idx] = -1
        self._st["pass_side"][idx] = 0.0
        self._st["pass_time"][idx] = 0.0
        self._st["pass_cool"][idx] = 0.0
        self._st["lost"][idx] = False

    def _noise(self, st, cars, s, channel):
        """Smooth noise in about [-1, 1] along the lap, per car (seeded)."""
        lam = np.asarray(NOISE_WAVELENGTHS_M)
        ph = st["phases"][cars, channel]
        return np.sum(np.sin(2.0 * np.pi * s[:, None] / lam[None, :] + ph), axis=1) / math.sqrt(len(lam) * 0.5) / 1.5

    # ------------------------------------------------------------------ control
    def __call__(self, sim, cars) -> np.ndarray:
        return self.act(sim, cars)

    def act(self, sim, cars) -> np.ndarray:
        """Controls ``(len(cars), 2)`` = ``[steer, throttle_brake]`` in [-1, 1]."""
        cars = np.asarray(cars, dtype=np.int64).reshape(-1)
        if cars.size == 0:
            return np.zeros((0, 2))
        if cars.min() < 0 or cars.max() >= sim.num_cars:
            raise ConfigError(f"car indices must be in [0, {sim.num_cars}), got {cars.min()}..{cars.max()}")
        pk = self._packed(sim, cars)
        st = self._state(sim)
        dt = 1.0 / sim.config.control_hz
        F = sim.F
        P = sim.P[cars]
        n = len(cars)
        s = F[F_S, cars]
        v = np.hypot(F[F_VX, cars], F[F_VY, cars])

        # ---- imperfection (zero at alien)
        amp = (1.0 - self.skill) / 0.15
        if amp > 0.0:
            d_noise = LINE_NOISE_M * amp * self._noise(st, cars, s, 0)
            speed_factor = 1.0 + SPEED_NOISE * amp * self._noise(st, cars, s, 1)
            brake_early = BRAKE_EARLY_M * amp * (0.5 + 0.5 * np.clip(self._noise(st, cars, s, 2), -1.0, 1.0))
        else:
            d_noise = np.zeros(n)
            speed_factor = np.ones(n)
            brake_early = np.zeros(n)

        # ---- race-craft: target offset from the line and a speed cap from traffic
        d_line = self._lookup(pk, "d", s)
        w_l = self._lookup(pk, "wl", s)
        w_r = self._lookup(pk, "wr", s)
        hw = 0.5 * P[:, P_WID]
        lo_edge = -w_r + hw + EDGE_MARGIN_M
        hi_edge = w_l - hw - EDGE_MARGIN_M
        # the line's offset noise fades where the line runs near an edge (no kinks)
        if amp > 0.0:
            room = np.where(d_noise > 0.0, hi_edge - d_line, d_line - lo_edge)
            d_noise = d_noise * np.clip(room / max(LINE_NOISE_M * amp, 1e-6), 0.0, 1.0)
        d_des = d_line + d_noise
        noise_off = d_noise
        v_cap = np.full(n, np.inf)
        lo_room = np.full(n, -np.inf)  # lateral bounds that keep room to cars alongside [m]
        hi_room = np.full(n, np.inf)
        if self.racecraft and sim.cars_per_race > 1:
            d_des, v_cap, lo_room, hi_room = self._racecraft(sim, cars, pk, st, s, v, d_des, lo_edge, hi_edge)
        # the offset moves like a car changing lanes: lateral speed and acceleration limited
        # (a step in the target's heading would be a step for the steering loop)
        d_off_prev = st["d_off"][cars]
        rate_prev = st["d_off_rate"][cars]
        want_rate = np.clip((d_des - d_line - d_off_prev) / max(2.0 * dt, 1e-9), -OFFSET_RATE_MPS, OFFSET_RATE_MPS)
        # brake the lateral motion in time: |rate| <= sqrt(2 a |distance left|)
        want_rate = np.clip(want_rate, -np.sqrt(2.0 * OFFSET_ACCEL_MPS2 * np.abs(d_des - d_line - d_off_prev)),
                            np.sqrt(2.0 * OFFSET_ACCEL_MPS2 * np.abs(d_des - d_line - d_off_prev)))
        rate = rate_prev + np.clip(want_rate - rate_prev, -OFFSET_ACCEL_MPS2 * dt, OFFSET_ACCEL_MPS2 * dt)
        d_off = d_off_prev + rate * dt
        # room to a car alongside comes first (hold, never swerve in), then the edges (the
        # line moves under a lagging offset)
        clipped = np.clip(d_off, lo_room - d_line, hi_room - d_line)
        clipped = np.clip(clipped, np.minimum(lo_edge, d_line) - d_line, np.maximum(hi_edge, d_line) - d_line)
        rate = np.where(clipped != d_off, 0.0, rate)  # held at an edge: no lateral motion to carry on
        d_off = clipped
        st["d_off"][cars] = d_off
        st["d_off_rate"][cars] = rate
        dd_off = rate / np.maximum(v, 5.0)  # slope of the offset along s [m/m]
        kap_off = (rate - rate_prev) / dt / np.maximum(v, 5.0) ** 2  # its curvature [1/m]

        # off the racing line (or still settling back onto it) the driver keeps a margin
        careful = (np.abs(d_off - noise_off) > 0.3) | (np.abs(sim.F[F_D, cars] - d_line - d_off) > SETTLED_ERROR_M)
        pedal, v_tgt = self._longitudinal(sim, cars, pk, st, P, s, v, d_off, careful, v_cap, speed_factor,
                                          brake_early)
        steer = self._lateral(sim, cars, pk, st, P, s, v, d_line + d_off, dd_off, d_off, kap_off, pedal, v_tgt)
        return np.stack([steer, pedal], axis=1)

    # ------------------------------------------------------------------ race-craft
    def _racecraft(self, sim, cars, pk, st, s, v, d_des, lo_edge, hi_edge):
        """Offset target and speed cap from the other cars of each car's race."""
        dt = 1.0 / sim.config.control_hz
        F = sim.F
        N = sim.cars_per_race
        n = len(cars)
        opp = (cars // N)[:, None] * N + np.arange(N)[None, :]  # (n, N)
        valid = (opp != cars[:, None]) & (sim.I[I_ACTIVE, opp] == 1)
        L = pk["length"][:, None]
        ds_o = np.mod(F[F_S, opp] - s[:, None] + 0.5 * L, L) - 0.5 * L  # > 0: ahead [m]
        hl = 0.5 * sim.P[cars, P_LEN][:, None] + 0.5 * sim.P[opp, P_LEN]
        sep = 0.5 * sim.P[cars, P_WID][:, None] + 0.5 * sim.P[opp, P_WID] + SIDE_CLEARANCE_M
        d_o = F[F_D, opp]
        d_c = F[F_D, cars][:, None]
        v_o = np.maximum(F[F_VX, opp], 0.0)
        gap = ds_o - hl  # bumper to bumper for a car ahead [m]
        mu_g = sim.P[cars, P_MU] * G

        # passes: start, hold, end. A pass follows a line parallel to the passed car's
        # position relative to the racing line, one separation to the chosen side.
        k_idx = np.arange(n)
        s_at_o = s[:, None] + ds_o  # the opponents' arc length as seen from the car
        d_line_o = self._lookup(pk, "d", s_at_o)
        wl_o = self._lookup(pk, "wl", s_at_o)
        wr_o = self._lookup(pk, "wr", s_at_o)
        hw = 0.5 * sim.P[cars, P_WID][:, None]
        # room beside each opponent, within PASS_MAX_OFFSET_M of the own line there
        ok_l = (d_o + sep <= wl_o - hw - EDGE_MARGIN_M) & (np.abs(d_o + sep - d_line_o) <= PASS_MAX_OFFSET_M)
        ok_r = (d_o - sep >= -wr_o + hw + EDGE_MARGIN_M) & (np.abs(d_o - sep - d_line_o) <= PASS_MAX_OFFSET_M)
        # passes start (and are given up) only where the next seconds need little
        # cornering: an offset line through a fast corner, or merging back in one, leaves
        # no margin
        t_look = np.asarray(LOOK_TIMES_S)[None, :]
        s_look = s[:, None] + np.maximum(v, 5.0)[:, None] * t_look
        kap_look = np.abs(self._lookup(pk, "kappa", s_look))
        v_look = self._lookup(pk, "v", s_look)
        mu_g_ = sim.P[cars, P_MU] * G
        calm = np.max(v_look**2 * kap_look, axis=1) < PASS_MAX_LATERAL_G * mu_g_
        tgt = st["pass_target"][cars]
        side = st["pass_side"][cars]
        has = tgt >= 0
        col = np.where(has, tgt - (cars // N) * N, 0)
        col0 = col
        room = np.where(side > 0, ok_l[k_idx, col], ok_r[k_idx, col])
        # a pass not yet alongside after PASS_TIMEOUT_S is given up (the car cannot close)
        timer = np.where(has, st["pass_time"][cars] + dt, 0.0)
        not_alongside = ds_o[k_idx, col] > hl[k_idx, col] + ALONGSIDE_MARGIN_M
        still = (has & valid[k_idx, col] & (ds_o[k_idx, col] > -(hl[k_idx, col] + PASS_CLEAR_M))
                 & ~(not_alongside & (timer > PASS_TIMEOUT_S)
                     & (calm | (gap[k_idx, col] > MIN_GAP_M + HEADWAY_S * v)))
                 & (gap[k_idx, col] < MIN_GAP_M + HEADWAY_S * v + PASS_START_GAP_M + PASS_GIVE_UP_M)
                 & (room | (np.abs(ds_o[k_idx, col]) < hl[k_idx, col] + ALONGSIDE_MARGIN_M)))
        tgt = np.where(still, tgt, -1)
        side = np.where(still, side, 0.0)
        horizon = np.maximum(30.0, 3.0 * v)[:, None]
        ahead = valid & (ds_o > 0.0) & (gap < horizon)
        in_path = (ahead & (np.abs(d_o - d_line_o) < sep - SIDE_CLEARANCE_M + 0.3)
                   & (np.abs(d_o - d_c) < sep))  # on the line ahead, and near the car's own track
        v_plan = self._lookup(pk, "v", s)
        v_rel = np.maximum(v[:, None] - v_o, 0.0)
        gap_min = MIN_GAP_M + HEADWAY_S * v[:, None]
        cool = st["pass_cool"][cars]
        # closing on it, or already held up at the following distance
        held = (v_rel > PASS_MIN_CLOSING_MPS) | (gap < gap_min + 2.0)
        settled = (v > PASS_MIN_SPEED_MPS) & (sim.race_time[cars // N] > PASS_START_DELAY_S)
        want = (in_path & calm[:, None] & (cool <= 0.0)[:, None] & held & settled[:, None]
                & (gap < gap_min + PASS_START_GAP_M + PASS_START_S * v_rel)
                & (v_plan[:, None] > v_o + PASS_MIN_GAIN_MPS) & (tgt[:, None] < 0) & (ok_l | ok_r))
        if want.any():
            # the side nearer the racing line; the nearest such car ahead
            pick_l = ok_l & (~ok_r | (np.abs(d_o + sep - d_line_o) <= np.abs(d_o - sep - d_line_o)))
            g = np.where(want, gap, np.inf)
            j = np.argmin(g, axis=1)
            start = np.isfinite(g[k_idx, j])
            tgt = np.where(start, opp[k_idx, j], tgt)
            side = np.where(start, np.where(pick_l[k_idx, j], 1.0, -1.0), side)
        st["pass_target"][cars] = tgt
        st["pass_side"][cars] = side
        st["pass_time"][cars] = np.where(tgt >= 0, np.where(has & still, timer, 0.0), 0.0)
        # after giving up a pass (not after completing one) wait before the next attempt
        gave_up = has & ~still & (ds_o[k_idx, col0] > 0.0)
        st["pass_cool"][cars] = np.where(gave_up, PASS_COOLDOWN_S, np.maximum(cool - dt, 0.0))
        passing = tgt >= 0
        col = np.where(passing, tgt - (cars // N) * N, 0)
        off_pass = d_o[k_idx, col] - d_line_o[k_idx, col] + side * sep[k_idx, col]
        d_des = np.where(passing, np.clip(self._lookup(pk, "d", s) + off_pass, lo_edge, hi_edge), d_des)

        # giving room: never aim closer than `sep` to a car alongside; a car already closer
        # holds its lateral position (it does not move in, nor swerve away)
        # (a car less than ROOM_BEHIND_M behind counts too: no cutting across its bow)
        alongside = valid & (ds_o < hl + ALONGSIDE_MARGIN_M) & (ds_o > -(hl + ROOM_BEHIND_M))
        on_left = d_o >= d_c
        hi = np.min(np.where(alongside & on_left, np.maximum(d_o - sep, d_c), np.inf), axis=1)
        lo = np.max(np.where(alongside & ~on_left, np.minimum(d_o + sep, d_c), -np.inf), axis=1)
        d_des = np.minimum(d_des, hi)
        d_des = np.maximum(d_des, lo)
        # ... but never off the track: without room the car drops back instead (below)
        d_line_now = self._lookup(pk, "d", s)
        d_des = np.clip(d_des, np.minimum(lo_edge, d_line_now), np.maximum(hi_edge, d_line_now))
        squeezed = (lo > hi) | (hi < lo_edge) | (lo > hi_edge)

        # following: stop behind any car ahead on the path the car is taking
        # (a car is in the way when the lateral band between the car and its target line,
        # widened by the two half widths, covers it)
        w_half = sep - SIDE_CLEARANCE_M + 0.2
        d_tgt_o = d_line_o + (d_des - d_line_now)[:, None]  # the car's target where each car ahead is
        band_lo = np.minimum(np.minimum(d_c, d_des[:, None]), d_tgt_o) - w_half
        band_hi = np.maximum(np.maximum(d_c, d_des[:, None]), d_tgt_o) + w_half
        blocked = ahead & (d_o > band_lo) & (d_o < band_hi)
        gap_min = MIN_GAP_M + HEADWAY_S * v[:, None]
        # in a corner only the grip the cornering leaves can brake
        k_here = np.abs(self._lookup(pk, "kappa", s))
        use = np.clip(v * v * k_here / mu_g, 0.0, 0.95)
        a_b = (FOLLOW_DECEL_FRACTION * mu_g * np.sqrt(1.0 - use**2))[:, None]
        v_o_next = np.maximum(v_o + np.minimum(F[F_AX, opp], 0.0) * 0.3, 0.0)  # it may be braking
        v_safe = np.where(gap > gap_min, np.sqrt(v_o_next**2 + 2.0 * a_b * np.maximum(gap - gap_min, 0.0)),
                          v_o_next - (gap_min - gap))
        v_cap = np.min(np.where(blocked, v_safe, np.inf), axis=1)
        # squeezed alongside with the other car ahead: drop back
        drop = squeezed[:, None] & alongside & (ds_o > 0.0)
        v_cap = np.minimum(v_cap, np.min(np.where(drop, v_o - 1.0, np.inf), axis=1))
        return d_des, np.maximum(v_cap, 0.0), lo, hi

    # ------------------------------------------------------------------ speed
    def _longitudinal(self, sim, cars, pk, st, P, s, v, d_off, careful, v_cap, speed_factor, brake_early):
        F = sim.F
        n = len(cars)
        m = P[:, P_M]
        lf = P[:, P_LF]
        lr = P[:, P_LR]
        wb = lf + lr
        vx = F[F_VX, cars]
        s_p = s + v * LATENCY_S
        s_v = s + v * SPEED_PREVIEW_S
        # target speed: the plan (earlier braking points below alien), the offset path's
        # corners while off the line, the traffic cap
        v_a = self._lookup(pk, "v", s_p)
        v_b = self._lookup(pk, "v", s_p + brake_early)
        a_a = self._lookup(pk, "acc", s_v)
        a_b = self._lookup(pk, "acc", s_v + brake_early)
        early = v_b < v_a
        v_tgt = speed_factor * np.where(early, v_b, v_a)
        a_ff = speed_factor**2 * np.where(early, a_b, a_a)
        if careful.any():
            # offset path curvature ~ kappa / (1 - kappa d_off): slower on the inside
            t = np.asarray((0.0,) + LOOK_TIMES_S)
            dist = np.maximum(v, 5.0)[:, None] * t[None, :]
            sp = s[:, None] + dist
            kap = self._lookup(pk, "kappa", sp)
            fac = np.sqrt(np.clip(1.0 - kap * d_off[:, None], 0.3, 1.0)) * OFFSET_LINE_MARGIN
            v_pts = self._lookup(pk, "v", sp) * fac
            brake = 0.7 * P[:, P_MU][:, None] * G
            v_env = np.min(np.sqrt(v_pts**2 + 2.0 * brake * dist), axis=1)
            lim = np.where(careful, v_env, np.inf)
            a_ff = np.where(lim < v_tgt, np.minimum(a_ff, 0.0), a_ff)
            v_tgt = np.minimum(v_tgt, lim)
        a_ff = np.where(v_cap < v_tgt, np.minimum(a_ff, 0.0), a_ff)
        v_tgt = np.minimum(v_tgt, v_cap)

        kap = self._lookup(pk, "kappa", s_p)
        kap = kap / np.clip(1.0 - kap * d_off, 0.3, 3.0)  # the offset path's curvature
        # cornering at the present speed, or the plan's where the car is faster than the
        # plan (it may run a little wide, but must not lose the rear braking)
        ay_int = np.minimum(v, self._lookup(pk, "v", s_p)) ** 2 * kap  # [m/s^2]
        fyf = m * np.abs(ay_int) * lr / wb  # steady-state cornering force per axle [N]
        fyr = m * np.abs(ay_int) * lf / wb
        q = 0.5 * P[:, P_RHO] * v * v
        down = q * P[:, P_CLA]
        fz0f = m * G * lr / wb + down * P[:, P_ABF]
        fz0r = m * G * lf / wb + down * (1.0 - P[:, P_ABF])
        k_tr = m * P[:, P_H] / wb
        fz_min = 0.05 * m * G

        integ = st["integ"][cars]
        a_des = a_ff + SPEED_GAIN * (v_tgt - v) + integ
        resist = P[:, P_CDA] * (1.0 - F[F_DRAFT, cars]) * q + P[:, P_CRR] * (m * G + down)
        resist += fyf * np.abs(np.sin(F[F_ALPHAF, cars])) + fyr * np.abs(np.sin(F[F_ALPHAR, cars]))
        f_need = m * a_des + resist
        drive_max = np.minimum(P[:, P_FDRIVE], P[:, P_POW] / np.maximum(vx, 1.0))
        bb = P[:, P_BB]
        mu_f = COMBINED_GRIP_MARGIN * P[:, P_MU]
        mu_r = COMBINED_GRIP_MARGIN * P[:, P_MU] * P[:, P_RGR]
        # grip left on each axle after its cornering force, with the loads the requested
        # acceleration brings (fixed point: force -> loads -> grip)
        drive = np.maximum(f_need, 0.0)
        brake = np.maximum(-f_need, 0.0)
        for _ in range(3):
            ax = (drive - brake - resist) / m
            fzf = np.maximum(fz0f - k_tr * ax, fz_min)
            fzr = np.maximum(fz0r + k_tr * ax, fz_min)
            capf_m = mu_f * fzf
            front_left = np.sqrt(np.maximum(capf_m**2 - fyf**2, 0.0))
            rear_left = np.sqrt(np.maximum((mu_r * fzr) ** 2 - fyr**2, 0.0))
            rear_left_b = np.sqrt(np.maximum((REAR_BRAKE_MARGIN * mu_r * fzr) ** 2 - fyr**2, 0.0))
            drive = np.minimum(np.maximum(f_need, 0.0),
                               np.minimum(np.minimum(rear_left, drive_max), P[:, P_ABS] * P[:, P_MU] * P[:, P_RGR] * fzr))
            abs_f = P[:, P_ABS] * P[:, P_MU] * fzf  # the simulator's caps per axle
            ebd_r = P[:, P_EBD] * P[:, P_MU] * P[:, P_RGR] * fzr
            fb_max = P[:, P_FBRAKE].copy()
            fb_max = np.where(abs_f > front_left, np.minimum(fb_max, front_left / np.maximum(bb, 1e-3)), fb_max)
            fb_max = np.where(ebd_r > rear_left_b, np.minimum(fb_max, rear_left_b / np.maximum(1.0 - bb, 1e-3)), fb_max)
            brake = np.minimum(np.maximum(-f_need, 0.0),
                               np.minimum(bb * fb_max, abs_f) + np.minimum((1.0 - bb) * fb_max, ebd_r))
        # pedal force for that braking: the simulator's ABS and brake-force distribution cap
        # the axles, past a cap only the other axle's share adds
        grid = np.sort(np.minimum(np.stack([np.zeros(n), abs_f / np.maximum(bb, 1e-3),
                                            ebd_r / np.maximum(1.0 - bb, 1e-3), fb_max], axis=1), fb_max[:, None]), axis=1)
        got = np.minimum(bb[:, None] * grid, abs_f[:, None]) + np.minimum((1.0 - bb[:, None]) * grid, ebd_r[:, None])
        fb = _piecewise_inverse(brake, grid, got)
        pedal = np.where(f_need >= 0.0, drive / drive_max, -fb / P[:, P_FBRAKE])
        # far off the target line, steering comes first: braking eases so the front keeps
        # some cornering grip
        e_abs = np.abs(F[F_D, cars] - self._lookup(pk, "d", s) - d_off)
        pedal = np.where(pedal < 0.0, pedal * np.clip(1.0 - (e_abs - 0.5) / 1.5, 0.4, 1.0), pedal)
        # a rear tyre near the peak of its slip curve has no grip to spare: lift
        peak_r = _inverse_magic(np.full(n, 0.999999), P[:, P_BR], P[:, P_C], P[:, P_E])
        spare = np.clip((REAR_SLIP_GUARD * peak_r - np.abs(F[F_ALPHAR, cars])) / (0.3 * peak_r), 0.0, 1.0)
        pedal = np.where(pedal > 0.0, pedal * spare, pedal)
        # smooth pedal while cornering
        ay_max = np.minimum(P[:, P_MU] * fz0f * wb / lr, P[:, P_MU] * P[:, P_RGR] * fz0r * wb / lf) / m
        use = np.clip(np.abs(v * v * kap) / ay_max, 0.0, 1.0)
        blend = np.clip((use - 0.2) / 0.4, 0.0, 1.0)
        rate = (PEDAL_RATE_STRAIGHT_PER_S * (1.0 - blend) + PEDAL_RATE_PER_S * blend) / sim.config.control_hz
        prev = F[F_THROTTLE_CMD, cars]
        pedal = np.clip(np.clip(pedal, prev - rate, prev + rate), -1.0, 1.0)
        # integrate the speed error only while the pedal is free and the error small
        free = (np.abs(pedal) < 0.98) & (np.abs(v_tgt - v) < 2.0)
        integ = np.where(free, integ + SPEED_INTEGRAL_GAIN * (v_tgt - v) / sim.config.control_hz, integ)
        st["integ"][cars] = np.clip(integ, -SPEED_INTEGRAL_MAX, SPEED_INTEGRAL_MAX)
        pedal = np.where(st["lost"][cars], np.clip(pedal, -1.0, RECOVERY_THROTTLE), pedal)
        return pedal, v_tgt

    # ------------------------------------------------------------------ steering
    def _lateral(self, sim, cars, pk, st, P, s, v, d_tgt, dd_off, d_off, kap_off, pedal, v_tgt):
        F = sim.F
        n = len(cars)
        m = P[:, P_M]
        lf = P[:, P_LF]
        lr = P[:, P_LR]
        wb = lf + lr
        vx = F[F_VX, cars]
        vy = F[F_VY, cars]
        r = F[F_R, cars]
        th = self._lookup(pk, "th", s, angle=True)
        beta = np.arctan2(vy, np.maximum(vx, 0.5))
        chi = _wrap(F[F_YAW, cars] + beta - th)  # course relative to the track [rad]
        psi_line = self._lookup(pk, "psi", s, angle=True) + np.arctan(dd_off)
        e = F[F_D, cars] - d_tgt
        dpsi = _wrap(chi - psi_line)
        # curvature where the command acts (an offset path: kappa / (1 - kappa d_off))
        k_line = self._lookup(pk, "kappa", s + v * LATENCY_S)
        kap = k_line / np.clip(1.0 - k_line * d_off, 0.3, 3.0) + kap_off
        k_now = self._lookup(pk, "kappa", s)
        k_now = k_now / np.clip(1.0 - k_now * d_off, 0.3, 3.0) + kap_off
        # feed-forward: kinematic angle plus the slip angles that carry the cornering
        # forces with the present axle loads (braking: the front needs less, the rear more)
        q = 0.5 * P[:, P_RHO] * v * v
        down = q * P[:, P_CLA]
        k_tr = m * P[:, P_H] / wb
        ax_ff = FF_TRANSFER * F[F_AX, cars]
        fzf = np.maximum(m * G * lr / wb + down * P[:, P_ABF] - k_tr * ax_ff, 0.05 * m * G)
        fzr = np.maximum(m * G * lf / wb + down * (1.0 - P[:, P_ABF]) + k_tr * ax_ff, 0.05 * m * G)
        capf = P[:, P_MU] * fzf
        capr = P[:, P_MU] * P[:, P_RGR] * fzr
        ay = np.minimum(v, v_tgt) ** 2 * np.abs(kap)  # the cornering the driver intends [m/s^2]
        bf, br, c, e_ = P[:, P_BF], P[:, P_BR], P[:, P_C], P[:, P_E]
        alpha_f = _inverse_magic(np.minimum(m * ay * lr / wb / capf, SLIP_DEMAND_MAX), bf, c, e_)
        alpha_r = _inverse_magic(np.minimum(m * ay * lf / wb / capr, SLIP_DEMAND_MAX), br, c, e_)
        delta_ff = np.arctan(wb * kap) + np.sign(kap) * (alpha_f - alpha_r)

        # LQR on the error dynamics with the tangent stiffness at the present slip
        vv = np.maximum(v, 5.0)
        beta_ss = lr * k_now - np.sign(k_now) * alpha_r  # steady-state sideslip [rad]
        x = np.stack([e, v * np.sin(dpsi), dpsi - beta + beta_ss, r - v * k_now], axis=1)
        slope_f0 = _magic_slope(0.0, bf, c, e_)
        slope_r0 = _magic_slope(0.0, br, c, e_)
        capf_now = P[:, P_MU] * F[F_FZF, cars]
        capr_now = P[:, P_MU] * P[:, P_RGR] * F[F_FZR, cars]
        drive_max = np.minimum(P[:, P_FDRIVE], P[:, P_POW] / np.maximum(vx, 1.0))
        bb = P[:, P_BB]
        fx_r = np.abs(np.where(pedal >= 0.0, pedal * drive_max, pedal * P[:, P_FBRAKE] * (1.0 - bb)))
        fx_f = np.abs(np.where(pedal >= 0.0, 0.0, pedal * P[:, P_FBRAKE] * bb))
        lat_f = np.sqrt(np.maximum(1.0 - (fx_f / capf_now) ** 2, 0.0))  # lateral share the long. force leaves
        lat_r = np.sqrt(np.maximum(1.0 - (fx_r / capr_now) ** 2, 0.0))
        cf = np.maximum(capf_now * lat_f * _magic_slope(np.abs(F[F_ALPHAF, cars]), bf, c, e_),
                        MIN_STIFFNESS * capf_now * slope_f0)
        cr = np.maximum(capr_now * lat_r * _magic_slope(np.abs(F[F_ALPHAR, cars]), br, c, e_),
                        MIN_STIFFNESS * capr_now * slope_r0)
        iz = P[:, P_IZ]
        a = np.zeros((n, 4, 4))
        a[:, 0, 1] = 1.0
        a[:, 1, 1] = -(cf + cr) / (m * vv)
        a[:, 1, 2] = (cf + cr) / m
        a[:, 1, 3] = (-cf * lf + cr * lr) / (m * vv)
        a[:, 2, 3] = 1.0
        a[:, 3, 1] = -(cf * lf - cr * lr) / (iz * vv)
        a[:, 3, 2] = (cf * lf - cr * lr) / iz
        a[:, 3, 3] = -(cf * lf * lf + cr * lr * lr) / (iz * vv)
        b = np.stack([np.zeros(n), cf / m, np.zeros(n), cf * lf / iz], axis=1)
        ad, bd = _zoh(a, b, 1.0 / sim.config.control_hz)
        q_mat = np.diag(LQR_Q)[None]
        ric = st["ric"][cars]
        fresh = ~np.isfinite(ric[:, 0, 0])
        ric[fresh] = q_mat[0]
        ric, gain = _riccati(ad, bd, q_mat, LQR_R, ric, LQR_ITERS)
        if fresh.any():
            ric[fresh], gain[fresh] = _riccati(ad[fresh], bd[fresh], q_mat, LQR_R, ric[fresh], 60)
        st["ric"][cars] = ric
        delta = delta_ff - np.sum(gain * x, axis=1)
        # never steer the front tyres past the slip where their cornering force tops out:
        # the peak of the curve, or less while braking takes part of the friction circle
        peak_f = _inverse_magic(np.clip(lat_f, 0.2, 0.999999), bf, c, e_)
        beta_f = np.arctan2(vy + lf * r, np.maximum(vx, 0.5))
        lim = np.where(v > 6.0, peak_f + np.clip((10.0 - v) / 4.0, 0.0, 1.0) * 10.0, np.inf)
        delta = np.clip(delta, beta_f - lim, beta_f + lim)
        # recovery: a car pointing well off its line (spun, or stopped askew) steers by
        # geometry towards a point ahead on the line (the linear model does not hold there)
        lost = np.abs(dpsi) > RECOVERY_HEADING_RAD
        if lost.any():
            look = np.maximum(8.0, v)
            th_a = self._lookup(pk, "th", s + look, angle=True)
            # world bearing of the target line a look-ahead on (the chord's mean heading)
            bearing = th + 0.5 * _wrap(th_a - th) + np.arctan2(d_tgt - F[F_D, cars], look)
            rel = _wrap(bearing - F[F_YAW, cars])
            delta = np.where(lost, np.clip(rel, -P[:, P_SMAX], P[:, P_SMAX]), delta)
        st["lost"][cars] = lost
        return np.clip(delta / P[:, P_SMAX], -1.0, 1.0)


#: The :class:`agents.drivers.Driver` protocol form (``name``, ``reset(sim, cars, seed)``,
#: ``act(sim, cars)``): :class:`ScriptedDriver` implements it directly.
ScriptedDriverAdapter = ScriptedDriver

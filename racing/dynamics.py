"""Numba kernels: the dynamic single-track model, walls, car-to-car contact.

Everything here is a pure function over arrays. The state layout is declared once below
(struct-of-arrays: ``F[field, car]`` floats and ``I[field, car]`` ints); units in comments.

The vehicle model, per physics step ``dt``:

* Steering: the road-wheel angle moves towards ``steer * max_steer`` at most at
  ``max_steer_rate``.
* Loads: static split, plus downforce (``aero_balance_front``), minus/plus longitudinal load
  transfer ``m a_x h / L`` (``a_x`` low-pass filtered, which breaks the algebraic loop).
* Longitudinal: rear-wheel drive ``min(max_drive_force, P / v)``, brakes split by
  ``brake_balance_front``; both limited to ``abs_limit x mu F_z`` per axle (ABS and traction
  control: an axle at full brake or throttle keeps ``sqrt(1 - abs_limit^2)`` of its
  cornering grip); the rear brake force also stays below ``rear_brake_limit x mu F_z``
  (brake-force distribution), so a car braking flat out stays straight.
* Lateral: Pacejka magic formula ``F_y = -D sin(C atan(B a - E (B a - atan(B a))))``
  of the slip angle ``a``; combined slip: the longitudinal force ``F_x`` takes its share of
  the axle's friction circle and the peak ``D = sqrt((mu F_z)^2 - F_x^2)`` is what is left,
  so a braking axle loses cornering stiffness as well as grip (a car braking hard
  understeers rather than spins).
* Aero drag ``0.5 rho CdA v^2`` (reduced in a slipstream), rolling resistance
  ``Crr F_z``; brakes and rolling resistance act as Coulomb friction, so a braking car
  stops exactly and a car at rest stays at rest.
* Low speed: lateral velocity and yaw rate are blended smoothly (smoothstep between
  ``blend_low_mps`` and ``blend_high_mps``) from the tyre-force model to the kinematic
  bicycle (``r = v_x tan(delta) / L``, ``v_y = l_r r``), so there is no singularity at
  ``v = 0`` and no hard switch.
* Integration: the stiff lateral/yaw pair ``(v_y, r)`` takes a linearly implicit Euler
  step with the analytic 2x2 Jacobian of the tyre forces (stable at every speed); ``v_x``
  an explicit step with Coulomb resistances; the body-frame rotation of the velocity
  (``-r x v``) a norm-preserving (Cayley) rotation; pose a semi-implicit step with the new velocities.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba.core import types as _nbt
from numba.extending import intrinsic

from racing.vehicle import PARAM_INDEX as _P

G = 9.81

# ----------------------------------------------------------------- state layout (floats)
F_X = 0  # [m] world position of the centre of gravity
F_Y = 1  # [m]
F_YAW = 2  # [rad] heading
F_VX = 3  # [m/s] body-frame longitudinal velocity
F_VY = 4  # [m/s] body-frame lateral velocity (left positive)
F_R = 5  # [rad/s] yaw rate
F_STEER = 6  # [rad] road-wheel steering angle
F_AX = 7  # [m/s^2] body longitudinal acceleration (filtered; load transfer)
F_AY = 8  # [m/s^2] body lateral acceleration
F_S = 9  # [m] arc length of the Frenet projection, in [0, L)
F_D = 10  # [m] lateral offset, left positive
F_DIST = 11  # [m] race distance: signed, continuous progress; 0 at the start line
F_DRAFT = 12  # [-] drag reduction from slipstream, in [0, 1)
F_FZF = 13  # [N] front axle load
F_FZR = 14  # [N] rear axle load
F_ALPHAF = 15  # [rad] front slip angle
F_ALPHAR = 16  # [rad] rear slip angle
F_LAP_T0 = 17  # [s] race time the current lap started
F_NEXT_LINE = 18  # [m] race distance of the next start/finish line crossing
F_NEXT_SECTOR = 19  # [m] race distance of the next sector boundary
F_LAP_D0 = 20  # [m] race distance where the current lap started
F_SECTOR_T0 = 21  # [s] race time the current sector started
F_OFF_TIME = 22  # [s] accumulated time with the car off the track
F_WALL_TIME = 23  # [s] accumulated time in wall contact
F_STEER_CMD = 24  # [-] last steering command in [-1, 1]
F_THROTTLE_CMD = 25  # [-] last throttle/brake command in [-1, 1]
F_PROGRESS_STEP = 26  # [m] signed progress during the last control step
F_WALL_SPEED2_TIME = 27  # [m^2/s] integral of speed^2 over wall-contact time, last control step
F_DDOT = 28  # [m/s] lateral velocity relative to the track (d-dot)
NUM_F = 29

# ------------------------------------------------------------------- state layout (ints)
I_SEG = 0  # track segment index of the projection (local search hint)
I_LAPS = 1  # completed laps
I_LAP_VALID = 2  # 1 while the current lap is still valid
I_TIMING = 3  # 1 once lap timing runs (flying laps start at the first crossing)
I_SECTOR = 4  # current sector index
I_OFF = 5  # 0 on track, 1 off track (centre beyond an edge), 2 off and cutting a corner
I_WALL = 6  # 1 if in wall contact during the last control step
I_ACTIVE = 7  # 1 if the car takes part (0: parked, ignored by contacts)
I_CAR_CONTACT = 8  # 1 if in car contact during the last control step
NUM_I = 9

# ------------------------------------------------------------------------ events
EV_CAR = 1.0  # car-to-car contact: a, b, closing speed, point, normal (from a to b)
EV_WALL = 2.0  # wall contact: a, normal speed into the wall, point, wall normal
EV_OFF_TRACK = 3.0  # the car's centre left the track (more than half the car beyond an edge)
EV_CORNER_CUT = 4.0  # off track on the inside of a corner
EV_LAP = 5.0  # lap completed: value = lap time [s], aux = 1 valid / 0 invalid, index = lap number
EV_SECTOR = 6.0  # sector completed: value = sector time [s], index = sector index

E_TYPE = 0
E_A = 1  # car index (global)
E_B = 2  # other car index, -1 if none
E_TIME = 3  # [s] race time of the event (first substep for merged contacts)
E_VALUE = 4  # closing speed [m/s] (contacts, max over the step), lap/sector time [s]
E_X = 5  # [m] contact point / position
E_Y = 6
E_NX = 7  # contact normal (a to b for cars; into the track for walls)
E_NY = 8
E_SA = 9  # [m] s of car a
E_SB = 10  # [m] s of car b
E_DA = 11  # [m] d of car a
E_DB = 12  # [m] d of car b
E_DDOTA = 13  # [m/s] lateral velocity of a relative to the track before the contact
E_DDOTB = 14  # [m/s] lateral velocity of b
E_AUX = 15  # contacts: contact time [s] in the step; laps: 1 valid / 0 invalid
E_INDEX = 16  # laps: lap number; sectors: sector index; off/cut: side (+1 left, -1 right)
E_SPEED2T = 17  # [m^2/s] contacts: integral of speed^2 dt while in contact
NUM_E = 18

# ----------------------------------------------------------------- sim config layout
C_RUNOFF_MU = 0  # [-] grip multiplier on run-off
C_RUNOFF_ROLL = 1  # [-] rolling resistance coefficient on run-off
C_WALL_E = 2  # [-] wall restitution
C_WALL_MU = 3  # [-] wall friction coefficient
C_CAR_E = 4  # [-] car-to-car restitution
C_CAR_MU = 5  # [-] car-to-car friction coefficient
C_DRAFT_MAX = 6  # [-] largest drag reduction right behind a car
C_DRAFT_LEN = 7  # [m] e-folding length of the wake behind a car
C_DRAFT_RANGE = 8  # [m] no slipstream beyond this gap
C_DRAFT_WIDTH = 9  # [m] lateral e-folding width of the wake
C_CUT_KAPPA = 10  # [1/m] curvature above which leaving on the inside is a corner cut
NUM_C = 11

# parameter columns (from racing.vehicle.PARAM_INDEX)
P_M = _P["mass_kg"]
P_IZ = _P["yaw_inertia_kgm2"]
P_LF = _P["lf_m"]
P_LR = _P["lr_m"]
P_H = _P["cg_height_m"]
P_LEN = _P["length_m"]
P_WID = _P["width_m"]
P_MU = _P["mu"]
P_RGR = _P["rear_grip_ratio"]
P_BF = _P["pacejka_b_front"]
P_BR = _P["pacejka_b_rear"]
P_C = _P["pacejka_c"]
P_E = _P["pacejka_e"]
P_POW = _P["max_power_w"]
P_FDRIVE = _P["max_drive_force_n"]
P_FBRAKE = _P["max_brake_force_n"]
P_BB = _P["brake_balance_front"]
P_ABS = _P["abs_limit"]
P_EBD = _P["rear_brake_limit"]
P_RHO = _P["air_density_kgpm3"]
P_CDA = _P["drag_area_m2"]
P_CLA = _P["lift_area_m2"]
P_ABF = _P["aero_balance_front"]
P_CRR = _P["rolling_resistance"]
P_SMAX = _P["max_steer_rad"]
P_SRATE = _P["max_steer_rate_radps"]
P_VLO = _P["blend_low_mps"]
P_VHI = _P["blend_high_mps"]
P_TAU = _P["kinematic_tau_s"]

_JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")


@intrinsic
def _sqrt(typingctx, x):
    """``math.sqrt`` as the LLVM intrinsic (one ``sqrtsd`` instruction) where numba would
    call libm's ``sqrt`` (which LLVM keeps when it cannot prove the argument >= 0). Both are
    IEEE-754 correctly rounded, so the results are the same bits."""
    if not isinstance(x, _nbt.Float):
        return None
    sig = x(x)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.sqrt", [args[0].type])
        return builder.call(fn, args)

    return sig, codegen


@nb.njit(**_JIT)
def magic(b, c, e, alpha):
    """Normalised magic formula sin(C atan(B a - E (B a - atan(B a)))) and its slope."""
    ba = b * alpha
    phi = ba - e * (ba - math.atan(ba))
    dphi = b - e * (b - b / (1.0 + ba * ba))
    ang = c * math.atan(phi)
    return math.sin(ang), math.cos(ang) * c / (1.0 + phi * phi) * dphi


@nb.njit(**_JIT)
def smoothstep(x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x * x * (3.0 - 2.0 * x)


@nb.njit(**_JIT)
def vehicle_substep_row(F, c, P, pr, steer_cmd, throttle, mu_scale_f, mu_scale_r, crr_f, crr_r, dt, trig, k):
    """Advance car ``c`` by one physics step ``dt`` (see the module docstring); its
    parameters are row ``pr`` of ``P`` (no array view is made: the simulator's hot loop).

    ``trig[:, k]`` caches ``(delta, cos delta, sin delta)`` of the car's last road-wheel
    angle between calls (a held steering angle needs no new trigonometry; the values are
    exactly those recomputed); fill ``trig[0, k]`` with NaN to start without one."""
    m = P[pr, P_M]
    iz = P[pr, P_IZ]
    lf = P[pr, P_LF]
    lr = P[pr, P_LR]
    wb = lf + lr
    vx = F[F_VX, c]
    vy = F[F_VY, c]
    r = F[F_R, c]
    yaw = F[F_YAW, c]

    # --- steering actuator (angle and rate limits)
    target = steer_cmd * P[pr, P_SMAX]
    delta = F[F_STEER, c]
    step = P[pr, P_SRATE] * dt
    dd = target - delta
    if dd > step:
        dd = step
    elif dd < -step:
        dd = -step
    delta += dd
    if delta == trig[0, k] and delta != 0.0:  # same value and bits (the sign of 0 aside)
        cd = trig[1, k]
        sd = trig[2, k]
    else:
        cd = math.cos(delta)
        sd = math.sin(delta)
        trig[0, k] = delta
        trig[1, k] = cd
        trig[2, k] = sd

    # --- aero and loads
    v2 = vx * vx + vy * vy
    speed = math.sqrt(v2)
    q = 0.5 * P[pr, P_RHO] * v2
    down = q * P[pr, P_CLA]
    ax_f = F[F_AX, c]
    transfer = m * ax_f * P[pr, P_H] / wb
    fzf = m * G * lr / wb + down * P[pr, P_ABF] - transfer
    fzr = m * G * lf / wb + down * (1.0 - P[pr, P_ABF]) + transfer
    fz_min = 0.05 * m * G
    if fzf < fz_min:
        fzf = fz_min
    if fzr < fz_min:
        fzr = fz_min
    muf = P[pr, P_MU] * mu_scale_f
    mur = P[pr, P_MU] * P[pr, P_RGR] * mu_scale_r
    capf = muf * fzf
    capr = mur * fzr

    # --- longitudinal tyre forces (magnitudes; brakes oppose the motion)
    drive = 0.0
    brake_f = 0.0
    brake_r = 0.0
    if throttle >= 0.0:
        vd = vx if vx > 1.0 else 1.0
        fmax = P[pr, P_POW] / vd
        if fmax > P[pr, P_FDRIVE]:
            fmax = P[pr, P_FDRIVE]
        drive = throttle * fmax
    else:
        fb = -throttle * P[pr, P_FBRAKE]
        brake_f = fb * P[pr, P_BB]
        brake_r = fb * (1.0 - P[pr, P_BB])
    # ABS / traction control hold each axle's longitudinal force below abs_limit of its
    # grip, so a braking or accelerating axle keeps some cornering grip
    lim_f = P[pr, P_ABS] * capf
    lim_r = P[pr, P_ABS] * capr
    if brake_f > lim_f:
        brake_f = lim_f
    # brake-force distribution keeps the rear brake well inside its grip: stable braking
    lim_brake_r = P[pr, P_EBD] * capr
    if brake_r > lim_brake_r:
        brake_r = lim_brake_r
    fx_r_long = drive - brake_r
    if fx_r_long > lim_r:
        fx_r_long = lim_r
    elif fx_r_long < -lim_r:
        fx_r_long = -lim_r

    # --- lateral tyre forces (slip angles against the rolling direction). Combined slip:
    # the longitudinal force uses part of the axle's friction circle and the magic
    # formula's peak D shrinks to what is left, sqrt(cap^2 - Fx^2), so braking or driving
    # lowers both the lateral limit and the cornering stiffness of that axle
    vreg = abs(vx)
    if vreg < 0.5:
        vreg = 0.5
    vyf = vy + lf * r
    vyr = vy - lr * r
    sgn_vx = 1.0 if vx >= 0.0 else -1.0
    alpha_f = math.atan2(vyf, vreg) - delta * sgn_vx
    alpha_r = math.atan2(vyr, vreg)
    mf, dmf = magic(P[pr, P_BF], P[pr, P_C], P[pr, P_E], alpha_f)
    mr, dmr = magic(P[pr, P_BR], P[pr, P_C], P[pr, P_E], alpha_r)
    xf = brake_f / capf
    xr = fx_r_long / capr
    scf = _sqrt(1.0 - xf * xf) if xf * xf < 1.0 else 0.0
    scr = _sqrt(1.0 - xr * xr) if xr * xr < 1.0 else 0.0
    fyf = -capf * scf * mf
    fyr = -capr * scr * mr

    # --- split the rear force into drive (signed) and Coulomb braking magnitude
    if throttle >= 0.0:
        drive_r = fx_r_long
        coul_r = 0.0
    else:
        drive_r = 0.0
        coul_r = -fx_r_long  # magnitude of rear braking
    roll = crr_f * fzf + crr_r * fzr
    drag = P[pr, P_CDA] * (1.0 - F[F_DRAFT, c]) * 0.5 * P[pr, P_RHO] * vx * abs(vx)

    # --- longitudinal: explicit, Coulomb resistances cannot reverse the motion
    # front brake force lies along the front wheel: its body-x part is brake_f cos(delta)
    # the lateral-force and vy*r terms belong to the dynamic model; the kinematic model
    # (low speed) moves along the body axis
    w = smoothstep((speed - P[pr, P_VLO]) / (P[pr, P_VHI] - P[pr, P_VLO]))
    ax_other = (drive_r - w * fyf * sd - drag) / m
    resist = (brake_f * cd + coul_r + roll) / m
    vx_new = vx + dt * ax_other
    dv = dt * resist
    if vx_new > dv:
        vx_new -= dv
    elif vx_new < -dv:
        vx_new += dv
    else:
        vx_new = 0.0
    # front brake also pushes sideways when the wheels are turned
    fxf_body_y = -brake_f * sd * (1.0 if vx >= 0.0 else -1.0)

    # --- lateral and yaw: blend dynamic <-> kinematic, linearly implicit step
    tau = P[pr, P_TAU]
    ay_dyn = (fyr + fyf * cd + fxf_body_y) / m
    rd_dyn = (lf * (fyf * cd + fxf_body_y) - lr * fyr) / iz
    r_kin = vx * (sd / cd) / wb
    vy_kin = lr * r_kin
    f1 = w * ay_dyn + (1.0 - w) * (vy_kin - vy) / tau
    f2 = w * rd_dyn + (1.0 - w) * (r_kin - r) / tau
    # Jacobian of (f1, f2) w.r.t. (vy, r); negative slopes beyond the tyre peak are
    # clipped to zero (the Jacobian only preconditions the step)
    sf = dmf if dmf > 0.0 else 0.0
    sr = dmr if dmr > 0.0 else 0.0
    gf = vreg / (vreg * vreg + vyf * vyf)
    gr = vreg / (vreg * vreg + vyr * vyr)
    kf = -capf * scf * sf * gf  # dFyf/dvy
    kr = -capr * scr * sr * gr  # dFyr/dvy
    j11 = w * (kr + kf * cd) / m - (1.0 - w) / tau
    j12 = w * (-lr * kr + lf * kf * cd) / m
    j21 = w * (lf * kf * cd - lr * kr) / iz
    j22 = w * (lf * lf * kf * cd + lr * lr * kr) / iz - (1.0 - w) / tau
    a11 = 1.0 - dt * j11
    a12 = -dt * j12
    a21 = -dt * j21
    a22 = 1.0 - dt * j22
    det = a11 * a22 - a12 * a21
    b1 = dt * f1
    b2 = dt * f2
    dvy = (b1 * a22 - a12 * b2) / det
    dr = (a11 * b2 - a21 * b1) / det
    vy_force = vy + dvy
    r_new = r + dr
    # the body frame turns with the car: rotate (vx, vy) by -r dt exactly (the -w x v term
    # of the body-frame equations; an explicit step here would pump energy into a spin)
    # Cayley form of the rotation: exactly norm-preserving, no transcendental calls; its
    # angle 2 atan(a / 2) equals a = -w r dt to third order
    a = -w * r_new * dt
    den = 1.0 / (1.0 + 0.25 * a * a)
    ca = (1.0 - 0.25 * a * a) * den
    sa = a * den
    vx_force = vx_new
    vx_new = ca * vx_force - sa * vy_force
    vy_new = sa * vx_force + ca * vy_force

    # --- pose (semi-implicit: new velocities)
    cy = math.cos(yaw)
    sy = math.sin(yaw)
    F[F_X, c] += dt * (vx_new * cy - vy_new * sy)
    F[F_Y, c] += dt * (vx_new * sy + vy_new * cy)
    F[F_YAW, c] = yaw + dt * r_new
    F[F_VX, c] = vx_new
    F[F_VY, c] = vy_new
    F[F_R, c] = r_new
    F[F_STEER, c] = delta
    ax = (vx_force - vx) / dt
    k = dt / 0.05
    if k > 1.0:
        k = 1.0
    F[F_AX, c] = ax_f + (ax - ax_f) * k
    F[F_AY, c] = w * (vy_force - vy) / dt + (1.0 - w) * vx_new * r_new
    F[F_FZF, c] = fzf
    F[F_FZR, c] = fzr
    F[F_ALPHAF, c] = alpha_f
    F[F_ALPHAR, c] = alpha_r


@nb.njit(**_JIT)
def vehicle_substep(F, c, P, steer_cmd, throttle, mu_scale_f, mu_scale_r, crr_f, crr_r, dt):
    """Advance car ``c`` by one physics step ``dt`` (see the module docstring); ``P`` is
    the car's parameter vector."""
    trig = np.full((3, 1), np.nan)
    vehicle_substep_row(F, c, P.reshape((1, P.shape[0])), 0, steer_cmd, throttle, mu_scale_f, mu_scale_r, crr_f,
                        crr_r, dt, trig, 0)


@nb.njit(**_JIT)
def apply_impulse_pair(F, a, b, ma, mb, ia, ib, px, py, nx, ny, e, mu):
    """Contact impulse between cars ``a`` and ``b`` at point ``p`` along normal ``n``
    (unit, from a to b). Equal and opposite: momentum is conserved; restitution ``e < 1``
    and Coulomb friction ``mu`` lose energy. Returns the closing speed (>= 0) or -1 when
    the cars are separating."""
    ca = math.cos(F[F_YAW, a])
    sa = math.sin(F[F_YAW, a])
    cb = math.cos(F[F_YAW, b])
    sb = math.sin(F[F_YAW, b])
    vax = F[F_VX, a] * ca - F[F_VY, a] * sa
    vay = F[F_VX, a] * sa + F[F_VY, a] * ca
    vbx = F[F_VX, b] * cb - F[F_VY, b] * sb
    vby = F[F_VX, b] * sb + F[F_VY, b] * cb
    wa = F[F_R, a]
    wb = F[F_R, b]
    rax = px - F[F_X, a]
    ray = py - F[F_Y, a]
    rbx = px - F[F_X, b]
    rby = py - F[F_Y, b]
    # velocity of the contact point on each body: v + w x r
    pax = vax - wa * ray
    pay = vay + wa * rax
    pbx = vbx - wb * rby
    pby = vby + wb * rbx
    relx = pbx - pax
    rely = pby - pay
    vn = relx * nx + rely * ny
    if vn >= 0.0:
        return -1.0
    ran = rax * ny - ray * nx
    rbn = rbx * ny - rby * nx
    kn = 1.0 / ma + 1.0 / mb + ran * ran / ia + rbn * rbn / ib
    jn = -(1.0 + e) * vn / kn
    tx = -ny
    ty = nx
    vt = relx * tx + rely * ty
    rat = rax * ty - ray * tx
    rbt = rbx * ty - rby * tx
    kt = 1.0 / ma + 1.0 / mb + rat * rat / ia + rbt * rbt / ib
    jt = -vt / kt
    lim = mu * jn
    if jt > lim:
        jt = lim
    elif jt < -lim:
        jt = -lim
    jx = jn * nx + jt * tx
    jy = jn * ny + jt * ty
    vax -= jx / ma
    vay -= jy / ma
    wa -= (rax * jy - ray * jx) / ia
    vbx += jx / mb
    vby += jy / mb
    wb += (rbx * jy - rby * jx) / ib
    F[F_VX, a] = vax * ca + vay * sa
    F[F_VY, a] = -vax * sa + vay * ca
    F[F_R, a] = wa
    F[F_VX, b] = vbx * cb + vby * sb
    F[F_VY, b] = -vbx * sb + vby * cb
    F[F_R, b] = wb
    return -vn


@nb.njit(**_JIT)
def obb_overlap(xa, ya, ha, la, wa, xb, yb, hb, lb, wb):
    """Separating-axis test of two oriented rectangles (centre, heading, length, width).

    Returns ``(depth, nx, ny, px, py)``: penetration depth (<= 0: apart), the unit normal
    from a to b, and an approximate contact point (midway between the deepest corners).
    """
    dx = xb - xa
    dy = yb - ya
    cas = math.cos(ha)
    sas = math.sin(ha)
    cbs = math.cos(hb)
    sbs = math.sin(hb)
    best = 1e300
    bnx = 0.0
    bny = 0.0
    for k in range(4):
        if k == 0:
            axx, axy = cas, sas
        elif k == 1:
            axx, axy = -sas, cas
        elif k == 2:
            axx, axy = cbs, sbs
        else:
            axx, axy = -sbs, cbs
        ra = 0.5 * la * abs(cas * axx + sas * axy) + 0.5 * wa * abs(-sas * axx + cas * axy)
        rb = 0.5 * lb * abs(cbs * axx + sbs * axy) + 0.5 * wb * abs(-sbs * axx + cbs * axy)
        dist = dx * axx + dy * axy
        ov = ra + rb - abs(dist)
        if ov <= 0.0:
            return ov, 0.0, 0.0, 0.0, 0.0
        if ov < best:
            best = ov
            if dist >= 0.0:
                bnx, bny = axx, axy
            else:
                bnx, bny = -axx, -axy
    # deepest corner of a along n and of b along -n
    amax = -1e300
    apx = xa
    apy = ya
    bmin = 1e300
    bpx = xb
    bpy = yb
    for sx in (-0.5, 0.5):
        for sy in (-0.5, 0.5):
            cx = xa + sx * la * cas - sy * wa * sas
            cy = ya + sx * la * sas + sy * wa * cas
            pr = cx * bnx + cy * bny
            if pr > amax:
                amax = pr
                apx = cx
                apy = cy
            cx = xb + sx * lb * cbs - sy * wb * sbs
            cy = yb + sx * lb * sbs + sy * wb * cbs
            pr = cx * bnx + cy * bny
            if pr < bmin:
                bmin = pr
                bpx = cx
                bpy = cy
    return best, bnx, bny, 0.5 * (apx + bpx), 0.5 * (apy + bpy)


def car_momentum(F: np.ndarray, masses: np.ndarray, cars) -> np.ndarray:
    """Total linear momentum [kg m/s] (world frame) of ``cars``; for tests and checks."""
    cars = np.asarray(cars)
    yaw = F[F_YAW, cars]
    vx = F[F_VX, cars] * np.cos(yaw) - F[F_VY, cars] * np.sin(yaw)
    vy = F[F_VX, cars] * np.sin(yaw) + F[F_VY, cars] * np.cos(yaw)
    return np.array([np.sum(masses[cars] * vx), np.sum(masses[cars] * vy)])

"""A simple line-following controller over a batch of cars (pure pursuit + speed control).

Used by the demo and the physics tests: it follows a lateral offset profile (the centreline
by default) at a target speed, with the look-ahead distance growing with speed. It is not
made for the limit of grip; the scripted drivers (:mod:`agents.scripted`) are.
"""

from __future__ import annotations

import numpy as np

from racing.dynamics import F_VX, F_X, F_Y, F_YAW, P_LF, P_LR, P_SMAX


def pure_pursuit(sim, cars, target_speed, line_d=None, *, lookahead_s: float = 0.9, min_lookahead_m: float = 6.0,
                 speed_gain: float = 0.5):
    """Controls ``(len(cars), 2)`` that steer each car towards a point ahead on its line.

    Args:
        sim: a :class:`racing.sim.RaceSim`.
        cars: global car indices.
        target_speed: [m/s] per car (or scalar).
        line_d: callable ``(race, s) -> d`` giving the line's lateral offset [m], or None
            for the centreline.
        lookahead_s: look-ahead time [s]; the look-ahead distance is ``max(min, v * t)``.
        speed_gain: throttle per m/s of speed error.
    """
    cars = np.asarray(cars)
    out = np.zeros((len(cars), 2))
    F = sim.F
    P = sim.P
    target_speed = np.broadcast_to(np.asarray(target_speed, dtype=np.float64), (len(cars),))
    for k, c in enumerate(cars):
        race = int(c) // sim.cars_per_race
        track = sim.track_of(race)
        v = float(F[F_VX, c])
        look = max(min_lookahead_m, v * lookahead_s)
        s_t = sim.s[c] + look
        d_t = 0.0 if line_d is None else float(line_d(race, s_t))
        tx, ty, _ = track.frenet_to_xy(s_t, d_t)
        dx = float(tx) - F[F_X, c]
        dy = float(ty) - F[F_Y, c]
        yaw = F[F_YAW, c]
        lx = dx * np.cos(yaw) + dy * np.sin(yaw)
        ly = -dx * np.sin(yaw) + dy * np.cos(yaw)
        ld2 = lx * lx + ly * ly
        wb = P[c, P_LF] + P[c, P_LR]
        delta = np.arctan2(2.0 * wb * ly, ld2)
        out[k, 0] = np.clip(delta / P[c, P_SMAX], -1.0, 1.0)
        err = target_speed[k] - v
        out[k, 1] = np.clip(speed_gain * err, -1.0, 1.0)
    return out


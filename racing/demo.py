"""``racing demo``: a scripted car lapping a built-in circuit, printing lap and sector times.

It needs nothing but the simulator: a centreline-following autopilot at a curvature-limited
target speed. It shows that the physics, the lap accounting and the tracks work together.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from racing.autopilot import pure_pursuit
from racing.errors import ConfigError


def centreline_speed_profile(track, vehicle, *, grip_fraction: float = 0.6) -> np.ndarray:
    """A conservative target speed per track sample [m/s]: the steady cornering speed of the
    centreline curvature (with ``grip_fraction`` of the grip), limited by braking ahead.
    The reference lap (the physical limit on the racing line) is a different, faster profile."""
    k = np.abs(track.kappa)
    radius = 1.0 / np.maximum(k, 1e-6)
    v_corner = np.array([vehicle.replace(mu=vehicle.mu * grip_fraction).grip_limited_speed(r) for r in radius])
    v = np.minimum(v_corner, vehicle.top_speed_mps)
    decel = 0.6 * grip_fraction * vehicle.mu * 9.81
    # backward pass (two laps for a closed track): v[i] <= sqrt(v[i+1]^2 + 2 a ds)
    n = track.n
    for _ in range(2):
        for i in range(n - 1, -1, -1):
            j = (i + 1) % n
            v[i] = min(v[i], np.sqrt(v[j] ** 2 + 2.0 * decel * track.ds))
    return v


def run_demo(track_spec: str = "club", vehicle_spec: str = "gt3", laps: int = 3, out=None) -> list:
    from racing.sim import RaceSim
    from racing.trackio import load_track
    from racing.vehicle import load_vehicle

    if laps < 1:
        raise ConfigError(f"--laps must be >= 1, got {laps}")
    out = out if out is not None else sys.stdout
    track = load_track(track_spec)
    vehicle = load_vehicle(vehicle_spec)
    profile = centreline_speed_profile(track, vehicle)
    sim = RaceSim(track, vehicle, num_races=1, cars_per_race=1)
    sim.reset_race(0, s=[track.length - 30.0], d=[0.0], speed=[0.0], standing=False)
    print(f"demo: {vehicle.name} on {track.name} ({track.length:.0f} m, {len(track.corners)} corners), "
          f"autopilot on the centreline at 60% of the grip, flying laps", file=out)
    max_steps = int((laps + 1.5) * track.length / 10.0 * sim.config.control_hz) + 600
    for _ in range(max_steps):
        idx = int((sim.s[0] + 0.2 * sim.speed[0]) / track.ds) % track.n  # anticipate 0.2 s
        u = pure_pursuit(sim, [0], profile[idx], lookahead_s=0.5, speed_gain=0.5)
        before = len(sim.laps[0])
        sim.step(u)
        if len(sim.laps[0]) > before:
            lap = sim.laps[0][-1]
            sectors = "  ".join(f"S{i + 1} {t:6.2f}" for i, t in enumerate(lap.sectors_s))
            print(f"  lap {lap.lap}: {lap.time_s:7.3f} s  {'valid' if lap.valid else 'INVALID'}  {sectors}", file=out)
            if len(sim.laps[0]) >= laps:
                break
    best = sim.best_lap(0)
    if best is not None:
        print(f"best valid lap {best:.3f} s, average speed {track.length / best * 3.6:.1f} km/h", file=out)
    return sim.laps[0]


def _cmd(args: argparse.Namespace) -> int:
    run_demo(args.track, args.vehicle, args.laps)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="a scripted car lapping a built-in circuit")
    p.add_argument("--track", default="club", help="track spec (default: club)")
    p.add_argument("--vehicle", default="gt3", help="vehicle preset or YAML (default: gt3)")
    p.add_argument("--laps", type=int, default=3)
    p.set_defaults(func=_cmd)

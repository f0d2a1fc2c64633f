"""``racing eval``: drive laps (alone or among scripted opponents) and report them against the
reference lap.

Many races run at once in one batched simulator (``--races N`` runs N seeds side by side), so
evaluating a driver on 20 seeds costs little more than one. The learner ("the driver") is car 0
of every race; opponents are scripted at ``--opponent-skill``.

Time trial (no opponents): a rolling start 300 m before the line on the reference line at 95%
of the reference speed there; laps are flying laps timed from the first crossing. With
``--races N`` race ``b > 0`` starts up to 50 m earlier at 90-100% of that speed (drawn from
``seed + b``), so deterministic drivers are evaluated from N different starts. Race (opponents): a standing start from a
two-wide grid with the driver at the back, laps counted from the start.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from racing.errors import ConfigError

ROLLING_START_M = 300.0
STUCK_S = 30.0  # [s] a driver without progress for this long is out of the race
ROLLING_START_SPEED = 0.95  # share of the reference speed at the rolling start


@dataclass
class Trace:
    """What the driver of race 0 did, for plots and videos."""

    x: list = field(default_factory=list)
    y: list = field(default_factory=list)
    s: list = field(default_factory=list)
    dist: list = field(default_factory=list)
    speed: list = field(default_factory=list)


def _check_out_path(path: str | None, what: str) -> None:
    if path is None or path == "-":
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"{what}: directory {parent} does not exist")


def evaluate(driver_spec: str, track_spec: str, *, vehicle: str = "gt3", laps: int = 3, opponents: int = 0,
             opponent_skill: str = "pro", seed: int = 0, races: int = 1, progress: bool = True,
             record_trace: bool = False, frame_callback=None) -> tuple[dict, Trace | None]:
    """Evaluate a driver; returns the JSON summary (see the module docstring) and the trace."""
    from racing.reference import reference_lap
    from racing.rules import Stewards
    from racing.sim import RaceSim, grid_positions
    from racing.trackio import load_track
    from racing.vehicle import load_vehicle

    from agents.drivers import make_driver

    if laps < 1:
        raise ConfigError(f"--laps must be >= 1, got {laps}")
    if opponents < 0 or opponents > 19:
        raise ConfigError(f"--opponents must be in 0..19, got {opponents}")
    if races < 1:
        raise ConfigError(f"--races must be >= 1, got {races}")
    track = load_track(track_spec)
    veh = load_vehicle(vehicle)
    ref = reference_lap(track, veh)
    driver = make_driver(driver_spec)
    opp = make_driver(f"scripted:{opponent_skill}") if opponents else None

    n = 1 + opponents
    sim = RaceSim(track, veh, num_races=races, cars_per_race=n)
    L = track.length
    me = np.arange(races) * n
    others = np.array([c for c in range(sim.num_cars) if c % n != 0], dtype=np.int64)
    for b in range(races):
        if opponents:
            s, d = grid_positions(track, n)
            # the driver starts at the back of the grid
            order = np.r_[n - 1, np.arange(n - 1)]
            sim.reset_race(b, s=s[order], d=d[order], speed=0.0, standing=True)
        else:
            # race b of seed S starts like a single run with seed S + b: race 0 exactly
            # ROLLING_START_M before the line, the others up to 50 m earlier and a little slower
            rng = np.random.default_rng(seed + b)
            jitter = (0.0, 1.0) if b == 0 else (rng.uniform(0.0, 50.0), rng.uniform(0.9, 1.0))
            s0 = L - ROLLING_START_M - jitter[0]
            speed = ROLLING_START_SPEED * jitter[1] * float(ref.speed_at(s0))
            sim.reset_race(b, s=[s0], d=[float(ref.offset_at(s0))], speed=[speed], standing=False)
    driver.reset(sim, me, seed)
    if opp is not None:
        opp.reset(sim, others, seed + 1)
    stewards = Stewards(sim)

    # time limit: three reference laps per lap plus a minute (a driver may never finish)
    limit_s = laps * 3.0 * ref.lap_time_s + 60.0
    max_steps = int(math.ceil(limit_s * sim.config.control_hz))
    trace = Trace() if record_trace else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=laps * races, desc=f"eval {driver_spec} on {track.name}", unit="lap", file=sys.stderr,
                   leave=False)
    done = np.zeros(races, dtype=bool)
    controls = np.zeros((sim.num_cars, 2))
    # a driver that gains less than 1 m of race distance in STUCK_S has given up: its race
    # ends there (its unfinished laps stay unreported)
    anchor = sim.dist[me].copy()
    stuck_for = np.zeros(races)
    done_since = None
    finish_time = np.full(races, np.nan)
    finish_order: list[list[int]] = [[] for _ in range(races)]
    steps = 0
    for steps in range(1, max_steps + 1):
        controls[me] = driver.act(sim, me)
        if opp is not None:
            controls[others] = opp.act(sim, others)
        # cars that finished coast to a stop off the racing line's pace: keep driving them
        events = sim.step(controls)
        stewards.update(events)
        moved = sim.dist[me] >= anchor + 1.0
        anchor = np.where(moved, sim.dist[me], anchor)
        stuck_for = np.where(moved, 0.0, stuck_for + sim.config.control_dt)
        done |= stuck_for >= STUCK_S
        for b in range(races):
            for c in sim.cars_of(b):
                if c not in finish_order[b] and len(sim.laps[c]) >= laps:
                    finish_order[b].append(c)
            if not done[b] and len(sim.laps[me[b]]) >= laps:
                done[b] = True
                finish_time[b] = sim.race_time[b]
        if bar is not None:
            laps_done = int(sum(min(len(sim.laps[c]), laps) for c in me))
            if laps_done > bar.n:
                bar.update(laps_done - bar.n)
        if trace is not None:
            c = me[0]
            trace.x.append(float(sim.x[c]))
            trace.y.append(float(sim.y[c]))
            trace.s.append(float(sim.s[c]))
            trace.dist.append(float(sim.dist[c]))
            trace.speed.append(float(sim.speed[c]))
        if frame_callback is not None:
            frame_callback(sim)
        if done.all():
            # with opponents, let the field finish (at most a minute more) for the classification
            if opp is None or all(len(finish_order[b]) == n for b in range(races)):
                break
            done_since = steps if done_since is None else done_since
            if (steps - done_since) * sim.config.control_dt > 60.0:
                break
    if bar is not None:
        bar.close()

    result = _summarise(sim, stewards, ref, driver_spec, track, veh, me, laps, opponents, opponent_skill, seed,
                        finish_order)
    return result, trace


def _lap_figures(sim, c, ref, laps):
    recs = sim.laps[c][:laps]
    valid = [r.time_s for r in recs if r.valid]
    best = min(valid) if valid else None
    return {
        "laps": [{"lap": r.lap, "time_s": round(r.time_s, 3), "valid": r.valid,
                  "sectors_s": [round(t, 3) for t in r.sectors_s]} for r in recs],
        "completed_laps": len(recs),
        "best_lap_s": None if best is None else round(best, 3),
        "mean_lap_s": None if not recs else round(float(np.mean([r.time_s for r in recs])), 3),
        "gap_to_reference_pct": None if best is None else round(100.0 * (best / ref.lap_time_s - 1.0), 2),
    }


def _summarise(sim, stewards, ref, driver_spec, track, veh, me, laps, opponents, opponent_skill, seed,
               finish_order) -> dict:
    from racing import dynamics as dy

    per_race = []
    for b, c in enumerate(me):
        fig = _lap_figures(sim, c, ref, laps)
        tally = stewards.summary(c)
        fig.update({
            "off_track_s": round(float(sim.F[dy.F_OFF_TIME, c]), 2),
            "wall_contacts": int(tally["wall_contacts"]),
            "collisions": {"total": int(tally["collisions"]), "at_fault": int(tally["at_fault_collisions"])},
            "penalties": {"count": int(tally["penalties"]), "seconds": float(tally["penalty_s"]),
                          "warnings": int(tally["warnings"])},
        })
        if opponents:
            fig["finish_position"] = _finish_position(sim, stewards, b, c, finish_order[b])
            fig["field"] = opponents + 1
        per_race.append(fig)
    out = {
        "track": track.name,
        "vehicle": veh.name,
        "driver": driver_spec,
        "reference_lap_s": round(ref.lap_time_s, 3),
        "seed": seed,
        "races": len(me),
    }
    if opponents:
        out["opponents"] = opponents
        out["opponent_skill"] = opponent_skill
    out.update(per_race[0])
    if len(per_race) > 1:
        out["per_race"] = per_race
        bests = [r["best_lap_s"] for r in per_race if r["best_lap_s"] is not None]
        out["aggregate"] = {
            "best_lap_s": min(bests) if bests else None,
            "median_best_lap_s": float(np.median(bests)) if bests else None,
            "races_with_valid_lap": len(bests),
            "mean_gap_to_reference_pct": None if not bests else round(
                float(np.mean([100 * (b / ref.lap_time_s - 1) for b in bests])), 2),
        }
    return out


def _finish_position(sim, stewards, race, car, finish_order) -> int:
    """Classification: finishers in order of finishing time plus penalties, then the rest by
    race distance."""
    cars = list(sim.cars_of(race))
    total = {c: sum(r.time_s for r in sim.laps[c]) for c in finish_order}

    def key(c):
        if c in total:
            return (0, total[c] + stewards.summary(c)["penalty_s"])
        return (1, -float(sim.dist[c]))

    ranked = sorted(cars, key=key)
    return ranked.index(car) + 1


def format_summary(res: dict) -> str:
    lines = [f"{res['driver']} on {res['track']} ({res['vehicle']}): reference lap {res['reference_lap_s']:.3f} s"]
    for lap in res["laps"]:
        sectors = "  ".join(f"S{i + 1} {t:6.2f}" for i, t in enumerate(lap["sectors_s"]))
        gap = 100.0 * (lap["time_s"] / res["reference_lap_s"] - 1.0)
        lines.append(f"  lap {lap['lap']}: {lap['time_s']:8.3f} s  {gap:+6.2f}%  "
                     f"{'valid  ' if lap['valid'] else 'INVALID'}  {sectors}")
    if res["best_lap_s"] is None:
        lines.append("  no valid lap completed")
    else:
        lines.append(f"  best valid lap {res['best_lap_s']:.3f} s, {res['gap_to_reference_pct']:+.2f}% to the reference")
    lines.append(f"  off track {res['off_track_s']:.1f} s, wall contacts {res['wall_contacts']}, collisions "
                 f"{res['collisions']['total']} ({res['collisions']['at_fault']} at fault), penalties "
                 f"{res['penalties']['seconds']:.0f} s")
    if "finish_position" in res:
        lines.append(f"  finished P{res['finish_position']} of {res['field']}")
    if "aggregate" in res:
        a = res["aggregate"]
        lines.append(f"  {res['races']} races: {a['races_with_valid_lap']} with a valid lap, "
                     f"median best {a['median_best_lap_s']}, mean gap {a['mean_gap_to_reference_pct']}%")
    return "\n".join(lines)


def plot_eval(trace: Trace, ref, track, path: str, title: str) -> None:
    """Track with the driven line coloured by speed over the reference line, and the speed
    trace against the reference speed profile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 11), gridspec_kw={"height_ratios": [3, 1.2]})
    le, re_ = track.left_edge, track.right_edge
    for e in (le, re_):
        ax1.plot(np.r_[e[:, 0], e[0, 0]], np.r_[e[:, 1], e[0, 1]], color="0.3", lw=0.8)
    ax1.plot(np.r_[ref.x_m, ref.x_m[0]], np.r_[ref.y_m, ref.y_m[0]], color="0.6", lw=1.0, ls="--",
             label="reference line")
    pts = np.c_[trace.x, trace.y]
    speed_kmh = np.asarray(trace.speed) * 3.6
    if len(pts) > 1:
        segs = np.stack([pts[:-1], pts[1:]], axis=1)
        lc = LineCollection(segs, cmap="viridis", linewidths=2.0)
        lc.set_array(speed_kmh[:-1])
        ax1.add_collection(lc)
        fig.colorbar(lc, ax=ax1, label="speed [km/h]", shrink=0.7)
    ax1.set_aspect("equal")
    ax1.set_title(title)
    ax1.legend(loc="upper right")
    ax1.set_xlabel("x [m]")
    ax1.set_ylabel("y [m]")
    dist = np.asarray(trace.dist)
    ax2.plot(dist, speed_kmh, lw=1.2, label="driver")
    grid = np.linspace(dist.min() if len(dist) else 0, dist.max() if len(dist) else track.length, 2000)
    ax2.plot(grid, ref.speed_at(np.mod(grid, track.length)) * 3.6, lw=1.0, color="0.4", ls="--",
             label="reference")
    for k in range(int(np.floor(grid.min() / track.length)) + 1, int(np.ceil(grid.max() / track.length)) + 1):
        ax2.axvline(k * track.length, color="0.8", lw=0.8)
    ax2.set_xlabel("race distance [m] (vertical lines: start/finish)")
    ax2.set_ylabel("speed [km/h]")
    ax2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cmd(args: argparse.Namespace) -> int:
    for p, what in ((args.json, "--json"), (args.plot, "--plot"), (args.video, "--video")):
        _check_out_path(p, what)
    frames = []
    renderer = None
    callback = None
    if args.video or args.render:
        from racing.render import TopDownRenderer
        from racing.trackio import load_track

        renderer = TopDownRenderer(load_track(args.track), width=640, height=640)

        def callback(sim):
            frame = renderer.draw(sim, race=0, focus_car=0, hud={
                "speed_kmh": float(sim.speed[0] * 3.6), "lap": len(sim.laps[0]) + 1,
                "last_lap_s": sim.laps[0][-1].time_s if sim.laps[0] else None})
            if args.video:
                frames.append(frame)
            if args.render == "human":
                renderer.show(frame)

    try:
        res, trace = evaluate(args.driver, args.track, vehicle=args.vehicle, laps=args.laps, opponents=args.opponents,
                              opponent_skill=args.opponent_skill, seed=args.seed, races=args.races,
                              progress=not args.no_progress, record_trace=bool(args.plot), frame_callback=callback)
    finally:
        if renderer is not None:
            renderer.close()
    if args.plot:
        from racing.reference import reference_lap
        from racing.trackio import load_track
        from racing.vehicle import load_vehicle

        track = load_track(args.track)
        best = "no valid lap" if res["best_lap_s"] is None else f"best {res['best_lap_s']:.3f} s"
        plot_eval(trace, reference_lap(track, load_vehicle(args.vehicle)), track, args.plot,
                  f"{res['driver']} on {res['track']}: {best}, reference {res['reference_lap_s']:.3f} s")
    if args.video:
        from racing.render import save_video

        written = save_video(frames, args.video, fps=int(round(10)))
        print(f"video: {written}", file=sys.stderr)
    if args.json:
        text = json.dumps(res, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            print(format_summary(res))
            print(f"json: {args.json}")
    else:
        print(format_summary(res))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="drive laps and compare them with the reference lap")
    p.add_argument("--driver", required=True, help="driver spec, e.g. scripted:alien")
    p.add_argument("--track", required=True, help="built-in name, random:SEED or a CSV path")
    p.add_argument("--vehicle", default="gt3", help="vehicle preset or YAML (default gt3)")
    p.add_argument("--laps", type=int, default=3)
    p.add_argument("--opponents", type=int, default=0, help="number of scripted opponents (0-19)")
    p.add_argument("--opponent-skill", default="pro", help="rookie, amateur, pro, alien or a number in (0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--races", type=int, default=1, help="races (seeds seed..seed+N-1) run side by side")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' for stdout)")
    p.add_argument("--plot", metavar="PNG", help="driven line and speed trace vs the reference")
    p.add_argument("--video", metavar="MP4", help="top-down video of race 0")
    p.add_argument("--render", choices=["human"], help="show a window while driving")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd)

"""``racing bench``: how fast the simulator and the environments run on this machine.

One run, single-threaded (numba and torch limited to one thread), measures

* (a) ``racing/TimeTrial-v0`` through the Gymnasium API, one car, random actions;
* (b) the batched simulator without observations: :class:`racing.sim.RaceSim` with 256
  races x 1 car and 16 races x 16 cars, driven by scripted ``amateur`` drivers so the cars
  lap and race instead of scraping walls (their time is not counted, only the step's);
  reported both in car **control** steps (0.1 s of simulated time, the unit an agent sees)
  and car **physics** steps (one 0.01 s substep; 10 per control step);
* (c) the batched vector env ``gymnasium.make_vec("racing/TimeTrial-v0", num_envs=256)``
  with observations, in car steps;
* (d) reference points: Gymnasium's ``Pendulum-v1`` and ``CarRacing-v3`` (needs box2d;
  null with the reason when it is missing).

Random actions are drawn before timing (a bank cycled through), so action sampling is not
measured. JIT compilation and first calls are a warm-up outside the timing; each figure is
the median of ``--repeats`` runs of a fixed wall-clock budget. Speed is a benchmark, never a
test: nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from racing.errors import ConfigError, RacingError

DEFAULT_BUDGET_S = 2.5  # [s] per repeat
QUICK_BUDGET_S = 0.5  # [s] per repeat with --quick
DEFAULT_REPEATS = 3
#: The simulator target: car steps per second per core without observations.
SIM_TARGET_PER_CORE = 1e6
ACTION_BANK = 256  # pre-drawn random actions cycled through


# ----------------------------------------------------------------------------- timing
def time_rate(step: Callable[[], None], units_per_call: float, budget_s: float, repeats: int,
              warmup_s: float | None = None, clock: dict | None = None) -> list[float]:
    """Rates [units/s] of ``repeats`` runs, each calling ``step`` for ``budget_s`` seconds
    of wall-clock time, after a warm-up (two calls, then ``warmup_s``, default a fifth of the
    budget) that absorbs JIT compilation and first-call costs. With ``clock`` (a dict whose
    ``"sim_s"`` the step adds its timed part to), only that part counts."""
    step()
    step()
    t_end = time.perf_counter() + (0.2 * budget_s if warmup_s is None else warmup_s)
    while time.perf_counter() < t_end:
        step()
    rates = []
    for _ in range(repeats):
        n = 0
        t0 = time.perf_counter()
        timed0 = clock["sim_s"] if clock is not None else 0.0
        while True:
            step()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= budget_s:
                break
        if clock is not None:
            dt = clock["sim_s"] - timed0
        rates.append(n * units_per_call / dt)
    return rates


def _result(label: str, unit: str, rates: list[float] | None = None, error: str | None = None, **detail) -> dict:
    return {
        "label": label,
        "unit": unit,
        "per_s": statistics.median(rates) if rates else None,
        "repeats_per_s": list(rates) if rates else [],
        "error": error,
        **detail,
    }


class _Threads:
    """Limit numba (and torch, when loaded) to one thread; restore on exit."""

    def __enter__(self):
        import numba

        self._numba = numba.get_num_threads()
        numba.set_num_threads(1)
        self._torch = None
        torch = sys.modules.get("torch")
        if torch is not None:
            self._torch = torch.get_num_threads()
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        import numba

        numba.set_num_threads(self._numba)
        if self._torch is not None:
            sys.modules["torch"].set_num_threads(self._torch)
        return False


# ----------------------------------------------------------------------- measurements
def measure_sim(num_races: int, cars_per_race: int, *, budget_s: float, repeats: int = DEFAULT_REPEATS,
                track_spec: str = "club", seed: int = 0) -> tuple[dict, dict]:
    """Car steps per second of :meth:`racing.sim.RaceSim.step` without observations.

    Races start at random places round the lap (a grid of ``cars_per_race`` cars at 20 m/s)
    and are driven by scripted ``amateur`` drivers (race-craft included), whose time is not
    counted: only :meth:`RaceSim.step` is timed. Returns two results: car control steps/s
    and car physics steps/s (the same runs times the substeps per control step).
    """
    from racing import dynamics as dy
    from racing.sim import RaceSim, grid_positions
    from racing.trackio import load_track

    track = load_track(track_spec)
    sim = RaceSim(track, "gt3", num_races=num_races, cars_per_race=cars_per_race)
    rng = np.random.default_rng(seed)
    gs, gd = grid_positions(track, cars_per_race)
    for b in range(num_races):
        sim.reset_race(b, s=gs + rng.uniform(0.0, track.length), d=gd, speed=np.full(cars_per_race, 20.0))
    from agents.scripted import ScriptedDriver

    driver = ScriptedDriver("amateur", seed=seed)
    cars = np.arange(sim.num_cars)
    stats = {"steps": 0, "events": 0, "wall": 0.0}
    clock = {"sim_s": 0.0}

    def step():
        u = driver.act(sim, cars)  # not timed: only RaceSim.step is measured
        t0 = time.perf_counter()
        ev = sim.step(u)
        clock["sim_s"] += time.perf_counter() - t0
        stats["steps"] += 1
        stats["events"] += len(ev.rows)
        stats["wall"] += float(np.mean(sim.I[dy.I_WALL]))

    rates = time_rate(step, sim.num_cars, budget_s, repeats, clock=clock)
    sub = sim.config.substeps
    shape = f"{num_races} races x {cars_per_race} car{'s' if cars_per_race > 1 else ''}"
    detail = {
        "num_races": num_races, "cars_per_race": cars_per_race, "track": track.name,
        "events_per_step": stats["events"] / max(stats["steps"], 1),
        "wall_contact_fraction": stats["wall"] / max(stats["steps"], 1),
    }
    control = _result(f"RaceSim {shape}, no obs", f"car control steps ({sim.config.control_dt:g} s)", rates, **detail)
    physics = _result(f"RaceSim {shape}, no obs", f"car physics steps ({sim.config.dt:g} s)",
                      [r * sub for r in rates], substeps=sub, **detail)
    return control, physics


def _gym_step_fn(env, seed: int):
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(ACTION_BANK)]
    env.reset(seed=seed)
    k = [0]

    def step():
        _, _, terminated, truncated, _ = env.step(actions[k[0] % ACTION_BANK])
        k[0] += 1
        if terminated or truncated:
            env.reset()

    return step


def measure_gym(env_id: str, *, budget_s: float, repeats: int = DEFAULT_REPEATS, seed: int = 0, **kwargs) -> dict:
    """Env steps per second of ``gymnasium.make(env_id)`` with random actions (resets
    included when an episode ends)."""
    import gymnasium as gym

    label = f"{env_id} (Gymnasium API)"
    try:
        env = gym.make(env_id, **kwargs)
    except Exception as exc:  # a missing optional dependency (box2d) or an unregistered id
        return _result(label, "env steps", error=f"{type(exc).__name__}: {exc}")
    try:
        rates = time_rate(_gym_step_fn(env, seed), 1, budget_s, repeats)
    finally:
        env.close()
    return _result(label, "env steps", rates)


def measure_vector(env_id: str, num_envs: int, *, budget_s: float, repeats: int = DEFAULT_REPEATS,
                   seed: int = 0) -> dict:
    """Car steps per second of ``gymnasium.make_vec(env_id, num_envs)`` (observations
    included, autoreset by the vector env)."""
    import gymnasium as gym

    label = f"{env_id} vector env, {num_envs} envs, with obs"
    try:
        venv = gym.make_vec(env_id, num_envs=num_envs)
    except Exception as exc:
        return _result(label, "car steps", error=f"{type(exc).__name__}: {exc}")
    try:
        venv.action_space.seed(seed)
        actions = [venv.action_space.sample() for _ in range(16)]
        venv.reset(seed=seed)
        k = [0]

        def step():
            venv.step(actions[k[0] % len(actions)])
            k[0] += 1

        rates = time_rate(step, num_envs, budget_s, repeats)
    finally:
        venv.close()
    return _result(label, "car steps", rates, vector_class=type(venv).__name__)


# ------------------------------------------------------------------------------ report
def machine_info() -> dict:
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import gymnasium

        info["gymnasium"] = gymnasium.__version__
    except ImportError:
        info["gymnasium"] = None
    return info


def _targets(r: dict) -> list[dict]:
    """Each target: the measured ratio and whether it is met (None when a figure is missing)."""
    v = {k: r[k]["per_s"] for k in r}
    rows = []

    def add(name, num, den, target, strict=False, at_most=False):
        ratio = None if num is None or den in (None, 0) else num / den
        met = None if ratio is None else (ratio <= target if at_most else ratio > target if strict else ratio >= target)
        rows.append({"name": name, "ratio": ratio, "target": target, "strict": strict, "at_most": at_most,
                     "met": met})

    add("single env / Pendulum-v1", v["single_env"], v["pendulum"], 0.5)
    add("vector env (256, obs) car steps / Pendulum-v1", v["vector_env_256"], v["pendulum"], 10.0)
    for key in ("sim_256x1", "sim_16x16"):
        shape = key.split("_")[1]
        add(f"sim {shape} physics car steps / 1e6 per core", v[f"{key}_physics"], SIM_TARGET_PER_CORE, 1.0, True)
        add(f"sim {shape} control car steps / 1e6 per core", v[f"{key}_control"], SIM_TARGET_PER_CORE, 1.0, True)
    add("single env / CarRacing-v3", v["single_env"], v["car_racing"], 100.0)
    add("vector env (256, obs) car steps / CarRacing-v3", v["vector_env_256"], v["car_racing"], 100.0)
    add("sim 256x1 control car steps / CarRacing-v3", v["sim_256x1_control"], v["car_racing"], 100.0)
    add("sim 16x16 control car steps / CarRacing-v3", v["sim_16x16_control"], v["car_racing"], 100.0)
    from agents.bench_runtime import LATENCY_P99_TARGET_MS, RUNTIME_TARGET_PER_CORE

    for b in (20, 256):
        if f"runtime_{b}" in v:
            add(f"runtime decisions, batch {b} / 20,000 per core", v[f"runtime_{b}"], RUNTIME_TARGET_PER_CORE, 1.0)
    if "server_20" in r:
        add("server p99 latency, 20 cars / 5 ms", r["server_20"].get("p99_ms"), LATENCY_P99_TARGET_MS, 1.0,
            at_most=True)
    return rows


def format_table(report: dict) -> str:
    m = report["machine"]
    st = report["settings"]
    lines = [
        f"racing bench: {m['cpu']}, {m['cores']} cores, measured on 1 thread; "
        f"median of {st['repeats']} x {st['budget_s']:g} s",
        "",
        f"{'measurement':<52} {'per second':>12}  unit",
        "-" * 96,
    ]
    for key, res in report["results"].items():
        if res["per_s"] is None:
            lines.append(f"{res['label']:<52} {'n/a':>12}  {res['error']}")
        elif "p99_ms" in res:
            lines.append(f"{res['label']:<52} {res['per_s']:>12,.0f}  {res['unit']} (p50 {res['p50_ms']:.2f} ms, "
                         f"p99 {res['p99_ms']:.2f} ms)")
        else:
            lines.append(f"{res['label']:<52} {res['per_s']:>12,.0f}  {res['unit']}")
    lines += ["", f"{'target':<52} {'ratio':>9}  {'needed':>8}  met", "-" * 80]
    for t in report["targets"]:
        ratio = "n/a" if t["ratio"] is None else f"{t['ratio']:.3g}"
        need = f"{'<=' if t.get('at_most') else '>' if t['strict'] else '>='} {t['target']:g}"
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"{t['name']:<52} {ratio:>9}  {need:>8}  {met}")
    lines.append("")
    lines.append("control step = 0.1 s of simulated time (what an agent sees); physics step = one 0.01 s substep.")
    return "\n".join(lines)


def run_bench(*, budget_s: float = DEFAULT_BUDGET_S, repeats: int = DEFAULT_REPEATS, track: str = "club",
              num_envs: int = 256, progress=sys.stderr, runtime: bool = True) -> dict:
    """Run every measurement once and return the report (machine, settings, results,
    targets). ``progress``: a stream for one line per measurement, or None."""
    import gymnasium  # noqa: F401  (fail early with the CLI's message if missing)

    try:
        import envs  # noqa: F401  (registers racing/TimeTrial-v0)
        envs_error = None
    except Exception as exc:
        envs_error = f"envs not importable: {type(exc).__name__}: {exc}"

    plan = [
        ("sim_256x1", "(b) RaceSim 256 races x 1 car", lambda: measure_sim(256, 1, budget_s=budget_s, repeats=repeats,
                                                                            track_spec=track)),
        ("sim_16x16", "(b) RaceSim 16 races x 16 cars", lambda: measure_sim(16, 16, budget_s=budget_s,
                                                                             repeats=repeats, track_spec=track)),
        ("single_env", "(a) racing/TimeTrial-v0, one env", lambda: measure_gym("racing/TimeTrial-v0",
                                                                               budget_s=budget_s, repeats=repeats)),
        ("vector_env_256", f"(c) racing/TimeTrial-v0 vector env x {num_envs}",
         lambda: measure_vector("racing/TimeTrial-v0", num_envs, budget_s=budget_s, repeats=repeats)),
        ("pendulum", "(d) Pendulum-v1", lambda: measure_gym("Pendulum-v1", budget_s=budget_s, repeats=repeats)),
        ("car_racing", "(d) CarRacing-v3", lambda: measure_gym("CarRacing-v3", budget_s=budget_s, repeats=repeats)),
    ]
    holder = {"stack": contextlib.ExitStack()}
    if runtime:
        from agents.bench_runtime import runtime_plan

        plan += runtime_plan(budget_s, repeats, holder)
    results: dict = {}
    with _Threads(), holder["stack"]:
        for k, (key, title, fn) in enumerate(plan, start=1):
            if progress is not None:
                print(f"bench [{k}/{len(plan)}] {title} ...", file=progress, flush=True)
            if envs_error is not None and key in ("single_env", "vector_env_256"):
                unit = "env steps" if key == "single_env" else "car steps"
                out = _result(title[4:], unit, error=envs_error)
            else:
                try:
                    out = fn()
                except (ImportError, RacingError) as exc:  # an optional part missing (onnxruntime, torch, httpx)
                    out = _result(title[4:], "n/a", error=f"{type(exc).__name__}: {exc}")
            if isinstance(out, tuple):  # the simulator: control and physics steps
                results[f"{key}_control"], results[f"{key}_physics"] = out
            else:
                results[key] = out
            if progress is not None:
                last = out[0] if isinstance(out, tuple) else out
                fig = (f"n/a: {last['error']}" if last["per_s"] is None
                       else f"{last['per_s']:,.0f} /s ({last['unit']})")
                print(f"bench [{k}/{len(plan)}]   {fig}", file=progress, flush=True)
    report = {
        "machine": machine_info(),
        "settings": {"budget_s": budget_s, "repeats": repeats, "threads": 1, "track": track, "num_envs": num_envs,
                     "sim_controller": "scripted amateur drivers (not timed: only RaceSim.step is)"},
        "results": results,
    }
    report["targets"] = _targets(results)
    return report


# --------------------------------------------------------------------------------- CLI
def _cmd(args: argparse.Namespace) -> int:
    budget = args.budget_s if args.budget_s is not None else (QUICK_BUDGET_S if args.quick else DEFAULT_BUDGET_S)
    if not budget > 0:
        raise ConfigError(f"--budget-s must be > 0, got {budget}")
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    out_path = None
    if args.json not in (None, "-"):
        out_path = Path(args.json).expanduser()
        if not out_path.resolve().parent.is_dir():
            raise ConfigError(f"--json: directory {out_path.resolve().parent} does not exist")
    try:
        import gymnasium  # noqa: F401
    except ImportError:
        raise ConfigError("racing bench needs gymnasium: pip install 'racing-rl[envs,bench]'") from None
    from racing.trackio import load_track

    load_track(args.track)  # a bad spec fails before minutes of measuring
    if args.training:
        from agents.bench_training import format_training_table, run_training_bench

        if not (args.window_s > 0 and args.cap_s > 0):
            raise ConfigError("--window-s and --cap-s must be > 0")
        report = {"machine": machine_info(), "training": run_training_bench(window_s=args.window_s, cap_s=args.cap_s)}
        table = format_training_table(report["training"])
    else:
        report = run_bench(budget_s=budget, repeats=args.repeats, track=args.track, progress=sys.stderr,
                           runtime=not args.no_runtime)
        table = format_table(report)
    if args.json == "-":
        print(table, file=sys.stderr)
        print(json.dumps(report, indent=2))
        return 0
    print(table)
    if out_path is not None:
        tmp = out_path.with_name(out_path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, out_path)
        print(f"wrote {out_path}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure simulator and environment speed on this machine",
                       description="Measure how fast the simulator and the environments run on this machine (single-threaded).")
    p.add_argument("--json", nargs="?", const="bench.json", default=None, metavar="PATH",
                   help="also write the figures as JSON (default bench.json; '-' prints JSON to stdout)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_BUDGET_S:g} s per repeat instead of "
                                                        f"{DEFAULT_BUDGET_S:g} s")
    p.add_argument("--budget-s", type=float, default=None, help="seconds per repeat (overrides --quick)")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="repeats per measurement; the median is "
                                                                         "reported (default 3)")
    p.add_argument("--track", default="club", help="track spec for the simulator runs (default: club)")
    p.add_argument("--no-runtime", action="store_true",
                   help="leave out the ONNX runtime and server measurements (e, f)")
    p.add_argument("--training", action="store_true",
                   help="instead: our trainer (0, 1, 2 workers) against SB3's SAC.learn(): throughput and time "
                        "to the first clean lap on the club circuit (takes several minutes)")
    p.add_argument("--window-s", type=float, default=40.0, help="--training: seconds of training per throughput figure")
    p.add_argument("--cap-s", type=float, default=600.0, help="--training: longest run to the first clean lap [s]")
    p.set_defaults(func=_cmd)

"""``racing bench`` for game integration: the ONNX runtime and the HTTP server.

* (e) car decisions per second through :class:`agents.runtime.Driver` for batches of 1, 20
  and 256 cars on one core: raw car states in (the required fields only, as a game sends
  them), actions out, observation building and the ONNX actor included. The states come
  from cars driving the club circuit (scripted), cycled through; building them is not timed.
* (f) request latency of ``racing serve`` for a 20-car ``POST /act`` on loopback: the server
  runs in its own process (as a game would use it), the client sends requests one after
  another on a kept-alive connection; p50 and p99 over the timed requests.

The driver is the built-in one, exported to a temporary directory first (needs torch).
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RUNTIME_BATCHES = (1, 20, 256)
SERVER_CARS = 20
RUNTIME_TARGET_PER_CORE = 20_000  # car decisions/s per core in batches
LATENCY_P99_TARGET_MS = 5.0


@contextlib.contextmanager
def exported_builtin():
    """A temporary directory holding the built-in driver exported as driver.onnx + .json."""
    from agents.export import export_driver

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, _ = export_driver("builtin", Path(tmp) / "driver.onnx")
        yield onnx_path


def driving_states(n_cars: int, n_frames: int = 32, track: str = "club", seed: int = 0) -> list[dict]:
    """``n_frames`` snapshots of the raw states (required fields) of ``n_cars`` cars driving
    ``track`` with scripted drivers, spread round the lap."""
    from agents.scripted import ScriptedDriver
    from racing import dynamics as dy
    from racing.sim import RaceSim
    from racing.trackio import load_track

    tr = load_track(track)
    sim = RaceSim(tr, "gt3", num_races=n_cars, cars_per_race=1)
    rng = np.random.default_rng(seed)
    for b in range(n_cars):
        sim.reset_race(b, s=[rng.uniform(0.0, tr.length)], d=[0.0], speed=[25.0], standing=False)
    driver = ScriptedDriver("pro", seed=seed)
    cars = np.arange(n_cars)
    frames = []
    for _ in range(n_frames):
        sim.step(driver.act(sim, cars))
        F = sim.F
        frames.append({"x": F[dy.F_X].copy(), "y": F[dy.F_Y].copy(), "yaw": F[dy.F_YAW].copy(),
                       "vx": F[dy.F_VX].copy(), "vy": F[dy.F_VY].copy(), "yaw_rate": F[dy.F_R].copy(),
                       "prev_steer": F[dy.F_STEER_CMD].copy(), "prev_throttle_brake": F[dy.F_THROTTLE_CMD].copy()})
    return frames


def measure_runtime(onnx_path, batch: int, *, budget_s: float, repeats: int) -> dict:
    """Car decisions per second of :meth:`agents.runtime.Driver.act` for ``batch`` cars."""
    from agents.bench import _result, time_rate
    from agents.runtime import Driver

    driver = Driver(onnx_path, threads=1)
    track = driver.track("club")
    frames = driving_states(batch)
    k = [0]

    def step():
        driver.act(track, frames[k[0] % len(frames)])
        k[0] += 1

    rates = time_rate(step, batch, budget_s, repeats)
    return _result(f"agents.runtime.Driver, batch of {batch}", "car decisions", rates, batch=batch)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_server(onnx_path, n_cars: int = SERVER_CARS, *, requests: int = 1000, warmup: int = 100,
                   startup_timeout_s: float = 60.0) -> dict:
    """p50/p99 latency [ms] of ``POST /act`` with ``n_cars`` cars against ``racing serve``
    in a separate process on loopback."""
    import httpx

    from agents.bench import _result

    label = f"racing serve POST /act, {n_cars} cars, loopback"
    port = _free_port()
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "racing.cli", "serve", "--driver", f"onnx:{onnx_path}", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10.0) as client:
            t_end = time.monotonic() + startup_timeout_s
            while True:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace").strip().splitlines()
                    return _result(label, "ms", error=f"server exited: {err[-1] if err else proc.returncode}")
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > t_end:
                    return _result(label, "ms", error=f"server did not answer within {startup_timeout_s:g} s")
                time.sleep(0.2)
            frames = driving_states(n_cars)
            bodies = [{"track": "club", "cars": [{"id": f"car{c}", **{k: float(v[c]) for k, v in f.items()}}
                                                 for c in range(n_cars)]} for f in frames]
            lat = []
            for i in range(warmup + requests):
                t0 = time.perf_counter()
                r = client.post("/act", json=bodies[i % len(bodies)])
                dt = time.perf_counter() - t0
                if r.status_code != 200:
                    return _result(label, "ms", error=f"HTTP {r.status_code}: {r.text[:200]}")
                if i >= warmup:
                    lat.append(1e3 * dt)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    res = _result(label, "requests", [1e3 / statistics.mean(lat)], n_cars=n_cars, requests=len(lat),
                  p50_ms=round(p50, 3), p99_ms=round(p99, 3), max_ms=round(lat[-1], 3))
    return res


def runtime_plan(budget_s: float, repeats: int, holder: dict) -> list:
    """Bench plan entries (key, title, fn) for :func:`agents.bench.run_bench`; ``holder``
    keeps the exported driver's directory open until the caller closes ``holder['stack']``."""

    def onnx_path():
        if "path" not in holder:
            holder["path"] = holder["stack"].enter_context(exported_builtin())
        return holder["path"]

    plan = [(f"runtime_{b}", f"(e) ONNX runtime, batch of {b}",
             (lambda b=b: measure_runtime(onnx_path(), b, budget_s=budget_s, repeats=repeats)))
            for b in RUNTIME_BATCHES]
    # 1000 timed requests at the default budget; fewer for quick runs
    requests = max(50, min(1000, int(400 * budget_s * repeats / 3)))
    plan.append(("server_20", f"(f) racing serve, {SERVER_CARS}-car request latency",
                 lambda: measure_server(onnx_path(), SERVER_CARS, requests=requests, warmup=min(100, requests))))
    return plan

#!/usr/bin/env python3
"""A small game loop that lets ``racing serve`` drive its cars.

The "game" is this project's own simulator (:class:`racing.sim.RaceSim`), stepped here, in
the client: each control step it sends the raw state of every car (pose, body-frame
velocities, previous command, and the optional steering angle and accelerations) to the
server's ``POST /act``, applies the actions that come back with ``sim.step`` and prints
each lap as it completes. The vehicle and the control rate come from ``GET /driver``, so
the client simulates the car the driver was trained with.

HTTP is the standard library's (``http.client``, one kept-alive connection); the only other
dependencies are numpy and the ``racing`` package (no torch, no onnxruntime).

Run ``racing serve --driver builtin`` in one terminal, then::

    python examples/game_client.py --track club --skills 1.0,0.7,0.4 --laps 2

Tracks: a built-in name (``club``, ...), ``random:SEED`` (the server generates the same
circuit) or a CSV track file (uploaded to the server as a centreline).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.parse

import numpy as np

from racing import dynamics as dy
from racing.errors import RacingError
from racing.sim import RaceSim, SimConfig
from racing.trackio import builtin_track_names, load_csv_track, load_track, read_track_csv
from racing.vehicle import vehicle_from_dict

TOKEN_ENV = "RACING_SERVE_TOKEN"
SPACED_GAP_M = 60.0  # [m] between cars with --start spaced


class ServerError(Exception):
    """The server answered with an error (its JSON message), or could not be reached."""


class DriverServer:
    """A tiny JSON client for ``racing serve`` over one persistent HTTP connection."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "") or not parts.hostname:
            raise ServerError(f"--url must look like http://HOST:PORT, got {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.base = parts.path.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body=None) -> dict:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        for attempt in (1, 2):  # one retry on a dropped keep-alive connection
            try:
                conn = self._connection()
                conn.request(method, self.base + path, body=data, headers=self.headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self.close()
                if attempt == 2:
                    raise ServerError(f"cannot reach the server at http://{self.host}:{self.port} ({exc}); "
                                      f"is 'racing serve' running?") from None
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"error": raw[:200].decode(errors="replace")}
        if resp.status >= 400:
            raise ServerError(f"{method} {path}: HTTP {resp.status}: {payload.get('error', payload)}")
        return payload

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def post(self, path: str, body) -> dict:
        return self.request("POST", path, body)



def prepare_track(server: DriverServer, spec: str):
    """The track to race on, known to both sides: ``(name for /act, local Track)``."""
    if spec in builtin_track_names():
        return spec, load_track(spec)  # the server knows the built-ins by name
    if spec.lower().startswith("random:"):
        track = load_track(spec)  # validates the seed
        info = server.post("/tracks", {"name": spec, "builtin": spec})
        return info["name"], track
    # a CSV file: upload its centreline; the server builds it as load_csv_track does
    xy, w_right, w_left, _ = read_track_csv(spec)
    track = load_csv_track(spec)
    name = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in track.name)[:60] or "uploaded"
    points = [[float(x), float(y), float(wl), float(wr)] for (x, y), wl, wr in zip(xy, w_left, w_right)]
    info = server.post("/tracks", {"name": name, "centreline": points})
    return info["name"], track


def car_states(sim: RaceSim, ids, skills, *, required_only: bool = False) -> list[dict]:
    """The ``cars`` of an ``/act`` request, read from the simulator's state.

    The first eight fields are required; the others are optional (the server derives what
    is left out from the vehicle model) and make the driver's observation exactly the one
    it was trained on: send what your game knows."""
    F, I = sim.F, sim.I
    cars = []
    for c, (car_id, skill) in enumerate(zip(ids, skills)):
        car = {
            "id": car_id,
            "x": float(F[dy.F_X, c]), "y": float(F[dy.F_Y, c]), "yaw": float(F[dy.F_YAW, c]),
            "vx": float(F[dy.F_VX, c]), "vy": float(F[dy.F_VY, c]), "yaw_rate": float(F[dy.F_R, c]),
            "prev_steer": float(F[dy.F_STEER_CMD, c]), "prev_throttle_brake": float(F[dy.F_THROTTLE_CMD, c]),
            "skill": float(skill),
        }
        if not required_only:
            car.update({
                "steer_angle": float(F[dy.F_STEER, c]), "ax": float(F[dy.F_AX, c]), "ay": float(F[dy.F_AY, c]),
                "slip_front": float(F[dy.F_ALPHAF, c]), "slip_rear": float(F[dy.F_ALPHAR, c]),
                "load_front": float(F[dy.F_FZF, c]), "load_rear": float(F[dy.F_FZR, c]),
                "wall_contact": int(I[dy.I_WALL, c] != 0),
            })
        cars.append(car)
    return cars


def run(args, out=sys.stdout) -> int:
    skills = [float(s) for s in args.skills.split(",") if s.strip()]
    if args.cars is not None:
        skills = (skills * args.cars)[: args.cars] if skills else [1.0] * args.cars
    if not skills or any(not 0.0 <= s <= 1.0 for s in skills):
        raise ServerError(f"--skills must be numbers in [0, 1], got {args.skills!r}")
    if args.laps < 1:
        raise ServerError(f"--laps must be >= 1, got {args.laps}")
    server = DriverServer(args.url, args.token)
    try:
        info = server.get("/driver")
        vehicle = vehicle_from_dict(dict(info["vehicle"]["params"]), origin="GET /driver")
        control_hz = float(info["control_hz"])
        name, track = prepare_track(server, args.track)
        n = len(skills)
        config = SimConfig(control_hz=control_hz)
        sim = RaceSim(track, vehicle, num_races=1, cars_per_race=n, config=config)  # standing start on the grid
        if args.start == "spaced":
            # single file, GAP_M apart in the order given, standing start behind the line: the
            # built-in driver was trained alone (it does not see other cars), so this keeps the
            # cars apart when the first cars are the faster ones
            sim.reset_race(0, s=np.mod(-10.0 - SPACED_GAP_M * np.arange(n), track.length), d=np.zeros(n))
        ids = [f"{args.id_prefix}{k + 1}" for k in range(n)]
        max_steps = args.max_steps or int(args.laps * track.length / 10.0 * control_hz) + 600
        print(f"{n} cars ({vehicle.name}) on {name} ({track.length:.0f} m), driver {info['driver']} at "
              f"{control_hz:g} Hz via {args.url}; skills {', '.join(f'{s:g}' for s in skills)}", file=out, flush=True)
        latencies = []
        step = 0
        for step in range(1, max_steps + 1):
            t0 = time.perf_counter()
            cars = car_states(sim, ids, skills, required_only=args.required_only)
            reply = server.post("/act", {"track": name, "cars": cars, "reset": step == 1})
            latencies.append(time.perf_counter() - t0)
            actions = np.array([[a["steer"], a["throttle_brake"]] for a in reply["actions"]], dtype=np.float64)
            done_before = [len(sim.laps[c]) for c in range(n)]
            sim.step(actions)
            for c in range(n):
                for lap in sim.laps[c][done_before[c]:]:
                    print(f"  {ids[c]} (skill {skills[c]:g})  lap {lap.lap}: {lap.time_s:8.3f} s  "
                          f"{'valid' if lap.valid else 'INVALID'}", file=out, flush=True)
            if all(len(sim.laps[c]) >= args.laps for c in range(n)):
                break
            if args.realtime:
                time.sleep(max(0.0, 1.0 / control_hz - (time.perf_counter() - t0)))
        lat = np.array(latencies) * 1e3
        print(f"{step} control steps ({step / control_hz:.1f} s of racing); /act round trip "
              f"p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms", file=out)
        for c in range(n):
            best = sim.best_lap(c)
            laps = len(sim.laps[c])
            print(f"  {ids[c]} (skill {skills[c]:g}): {laps} lap{'s' if laps != 1 else ''}, best valid "
                  f"{'-' if best is None else f'{best:.3f} s'}, {sim.dist[c]:.0f} m driven", file=out)
    finally:
        server.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="A game loop whose cars are driven by 'racing serve'.")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default http://127.0.0.1:8000)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"bearer token, if the server has one (default ${TOKEN_ENV})")
    p.add_argument("--track", default="club", help="built-in name, random:SEED or a CSV track file (default club)")
    p.add_argument("--skills", default="1.0,0.7,0.4", help="one skill in [0, 1] per car (default 1.0,0.7,0.4)")
    p.add_argument("--cars", type=int, default=None, help="number of cars (repeats --skills; default: one per skill)")
    p.add_argument("--laps", type=int, default=2, help="stop when every car has done this many laps (default 2)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many control steps at the latest")
    p.add_argument("--start", choices=("spaced", "grid"), default="spaced",
                   help=f"spaced: single file {SPACED_GAP_M:g} m apart (default); grid: two-wide starting grid")
    p.add_argument("--realtime", action="store_true", help="pace the loop at the control rate, as a game would")
    p.add_argument("--required-only", action="store_true",
                   help="send only the eight required fields per car (the server derives slip angles, loads, ...)")
    p.add_argument("--id-prefix", default="car", help="car ids are PREFIX1, PREFIX2, ... (default car)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ServerError, RacingError) as exc:
        print(f"game_client: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

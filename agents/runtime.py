"""A torch-free driver runtime for games: ONNX actor + the environments' observation builder.

:class:`Driver` loads an exported driver (``driver.onnx`` and ``driver.json``, written by
``racing export``) with onnxruntime and answers, for a batch of cars on one track, the
actions ``[steer, throttle_brake]`` in [-1, 1]. It needs numpy, numba, PyYAML and
onnxruntime: neither torch nor ray (nor gymnasium) is imported.

Two ways to feed it:

* **Raw states** from the game (:meth:`Driver.act`): per car its pose, velocities and
  previous action (:data:`REQUIRED_FIELDS`), optionally more of the simulator's state
  (:data:`OPTIONAL_FIELDS`). The runtime projects each car onto the track and builds the
  observations with :func:`envs.observation.build_observations`, the code the environments
  use; quantities the game does not send are derived from the vehicle model in
  ``driver.json`` (see :data:`OPTIONAL_FIELDS`). All cars of one call are in the same race:
  a driver trained with opponents in its observation sees the other cars of the call.
* **A simulator** (:meth:`Driver.act_sim`): cars of a :class:`racing.sim.RaceSim`, exactly as
  in training (``racing eval --driver onnx:driver.onnx`` uses this).

Difficulty (``skill`` in [0, 1], per car; :func:`skill_settings`): ``1.0`` is the unmodified
driver; lower values cap the speed at a fraction of the reference (physical-limit) speed
profile of the track (looking :data:`CAP_PREVIEW_S` ahead, so the car brakes for corners),
slow the driver's reactions (its actions follow the policy's through a first-order lag) and
add smooth noise to its actions. Everything scales linearly with ``1 - skill``:

=====  ================  ================  =============
skill  speed cap          reaction lag      action noise
=====  ================  ================  =============
1.0    none               0                 0
0.75   90 % of the limit  0.05 s            0.0125
0.5    80 %               0.1 s             0.025
0.25   70 %               0.15 s            0.0375
0.0    60 %               0.2 s             0.05
=====  ================  ================  =============

(A pure reaction *delay* of even one control step made the trained driver unstable and crash;
a lag keeps it on the road.) Lag and noise are per car and keep state between calls: give
each car a stable ``id`` (default: its row) and call :meth:`Driver.reset` when a race
restarts. Each car's noise is seeded from ``seed`` and its id, so a run is reproducible
whatever other cars the runtime drives.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numba as nb
import numpy as np

from racing.dynamics import F_S as _F_S
from racing.errors import ConfigError
from racing.track import project_packed

SPEC_FORMAT = "racing-onnx-driver"
SPEC_FORMAT_VERSION = 1

#: Per-car state a game must send (SI units, world frame ``x`` east / ``y`` north, yaw
#: counter-clockwise from ``x``; velocities in the car's body frame, ``x`` forward, ``y`` left).
REQUIRED_FIELDS = {
    "x": "[m] world position of the centre of gravity",
    "y": "[m] world position of the centre of gravity",
    "yaw": "[rad] heading, counter-clockwise from the world x axis",
    "vx": "[m/s] body-frame longitudinal velocity",
    "vy": "[m/s] body-frame lateral velocity (left positive)",
    "yaw_rate": "[rad/s] yaw rate (counter-clockwise positive)",
    "prev_steer": "[-] the steering command the car drove with in the last control step, in [-1, 1]",
    "prev_throttle_brake": "[-] the throttle (+) / brake (-) command of the last control step, in [-1, 1]",
}

#: Per-car state a game may send; what the runtime uses when it is left out.
OPTIONAL_FIELDS = {
    "steer_angle": "[rad] road-wheel steering angle; default prev_steer x max_steer_rad (the actuator's target)",
    "ax": "[m/s^2] body longitudinal acceleration; default 0",
    "ay": "[m/s^2] body lateral acceleration; default vx x yaw_rate (steady state)",
    "slip_front": "[rad] front slip angle; default from vx, vy, yaw_rate, steer_angle as the simulator computes it",
    "slip_rear": "[rad] rear slip angle; default as slip_front",
    "load_front": "[N] front axle load; default static share + downforce - load transfer from ax",
    "load_rear": "[N] rear axle load; default as load_front",
    "wall_contact": "[-] 1 if the car touched a wall during the last control step; default 0",
}

STATE_FIELDS = tuple(REQUIRED_FIELDS) + tuple(OPTIONAL_FIELDS)


# ============================================================================ skill
@dataclass(frozen=True)
class SkillSettings:
    """What a skill level does to the driver (see the module docstring)."""

    skill: float
    speed_cap: float  # fraction of the reference speed; inf = no cap
    reaction_s: float  # [s] time constant of the driver's reaction lag (first order)
    noise_std: float  # standard deviation of the action noise (stationary)


SPEED_CAP_AT_ZERO = 0.6  # speed cap at skill 0 (fraction of the reference profile); 1.0 at skill 1
MAX_REACTION_S = 0.2  # [s] reaction lag time constant at skill 0
MAX_NOISE_STD = 0.05  # action noise at skill 0
NOISE_CORRELATION = 0.8  # AR(1) coefficient per control step: smooth noise, not jitter
CAP_PREVIEW_S = 0.6  # the cap looks this far ahead at the current speed (brakes before corners)
CAP_GAIN_PER_MPS = 0.3  # throttle_brake allowed per m/s below the cap
CAP_MAX_BRAKE = 0.5  # the cap brakes at most this hard (the policy may brake harder)


def skill_settings(skill: float) -> SkillSettings:
    """The settings of one skill level in [0, 1] (a :class:`ConfigError` outside it)."""
    if isinstance(skill, bool) or not isinstance(skill, (int, float, np.integer, np.floating)):
        raise ConfigError(f"skill must be a number in [0, 1], got {skill!r}")
    s = float(skill)
    if not (math.isfinite(s) and 0.0 <= s <= 1.0):
        raise ConfigError(f"skill must be in [0, 1] (1 = the unmodified driver), got {skill!r}")
    if s >= 1.0:
        return SkillSettings(1.0, math.inf, 0.0, 0.0)
    return SkillSettings(s, SPEED_CAP_AT_ZERO + (1.0 - SPEED_CAP_AT_ZERO) * s, MAX_REACTION_S * (1.0 - s),
                         MAX_NOISE_STD * (1.0 - s))


# ============================================================================ projection
@nb.njit(cache=True, nogil=True)
def _project_cars(x, y, hint, pk_x, pk_y, pk_wl, pk_wr, off, n, ds, s_out, d_out, seg_out, off_out):
    """Frenet projection of every car (global search where ``hint < 0``) and the off-track
    flag (centre beyond an edge, widths linear between samples), as the simulator."""
    for c in range(x.shape[0]):
        i, u, d = project_packed(x[c], y[c], hint[c], pk_x, pk_y, off, n)
        j = i + 1 if i + 1 < n else 0
        wl = pk_wl[off + i] * (1.0 - u) + pk_wl[off + j] * u
        wr = pk_wr[off + i] * (1.0 - u) + pk_wr[off + j] * u
        s_out[c] = (i + u) * ds
        d_out[c] = d
        seg_out[c] = i
        off_out[c] = 1 if (d > wl or d < -wr) else 0


# ============================================================================ the runtime
class Driver:
    """An exported driver (ONNX + JSON spec) driving a batch of cars.

    Args:
        path: ``driver.onnx`` (the spec is read from ``driver.json`` beside it) or the
            ``.json`` (the model from the ``.onnx`` beside it).
        threads: onnxruntime intra-op threads (1: one core per runtime, the fastest for
            small batches).
        seed: seeds the action noise of skills below 1.

    Bad files give a :class:`ConfigError` naming the file and what is wrong.
    """

    def __init__(self, path, *, threads: int = 1, seed: int = 0):
        try:
            import onnxruntime as ort
        except ModuleNotFoundError:
            raise ConfigError("the driver runtime needs onnxruntime: pip install 'racing-rl[runtime]'") from None

        from envs.observation import ObsConfig
        from racing.vehicle import vehicle_from_dict

        for name, value, low in (("threads", threads, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        onnx_path, spec_path = _paths(path)
        try:
            spec = json.loads(spec_path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"driver spec not found: {spec_path} (racing export writes it beside the .onnx)") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{spec_path}: not a readable JSON driver spec ({exc})") from None
        if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
            raise ConfigError(f"{spec_path}: not a racing driver spec (format must be '{SPEC_FORMAT}')")
        if int(spec.get("format_version", 0)) > SPEC_FORMAT_VERSION:
            raise ConfigError(f"{spec_path}: spec format version {spec['format_version']} is newer than this "
                              f"runtime reads ({SPEC_FORMAT_VERSION}); upgrade racing-rl")
        try:
            self.obs_config = ObsConfig.from_dict(spec["observation"]["config"])
            self.vehicle = vehicle_from_dict(dict(spec["vehicle"]["params"]), origin=str(spec_path))
            self.control_hz = float(spec["control"]["control_hz"])
            in_name = spec["onnx"]["input"]
            self._out_name = spec["onnx"]["output"]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{spec_path}: driver spec lacks {exc}") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
        except FileNotFoundError:
            raise ConfigError(f"ONNX model not found: {onnx_path}") from None
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ConfigError(f"{onnx_path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        if in_name not in inputs:
            raise ConfigError(f"{onnx_path}: has no input '{in_name}' (inputs: {sorted(inputs)})")
        width = inputs[in_name].shape[-1]
        if isinstance(width, int) and width != self.obs_config.dim:
            raise ConfigError(f"{onnx_path}: the model takes {width} inputs but the spec's observation has "
                              f"{self.obs_config.dim}")
        self._in_name = in_name
        self.spec = spec
        self.path = onnx_path
        self.name = f"onnx:{onnx_path}"
        self.obs_dim = self.obs_config.dim
        self.seed = int(seed)
        self._memory: dict = {}  # car id -> _CarMemory
        self._tracks: dict = {}  # spec string -> Track
        self._scratch: dict = {}  # (id(track), n) -> (namespace, track)

    # ------------------------------------------------------------ policy
    def policy(self, obs: np.ndarray) -> np.ndarray:
        """The unmodified actor: actions ``(len(obs), 2)`` float32 in [-1, 1] for observation
        rows ``(len(obs), obs_dim)``."""
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ConfigError(f"observations must have shape (N, {self.obs_dim}), got {obs.shape}")
        if obs.shape[0] == 0:
            return np.zeros((0, 2), dtype=np.float32)
        return self.session.run([self._out_name], {self._in_name: obs})[0]

    # ------------------------------------------------------------ tracks
    def track(self, track):
        """A :class:`racing.track.Track` from a Track or a track spec (built-in name,
        ``random:SEED``, CSV path); loaded specs are cached."""
        from racing.track import Track
        from racing.trackio import load_track

        if isinstance(track, Track):
            return track
        if not isinstance(track, str) or not track.strip():
            raise ConfigError(f"track must be a Track or a track spec string, got {track!r}")
        if track not in self._tracks:
            self._tracks[track] = load_track(track)
        return self._tracks[track]

    def reference(self, track):
        """The reference (physical-limit) lap of this driver's vehicle on ``track``."""
        from racing.reference import reference_lap

        return reference_lap(self.track(track), self.vehicle)

    # ------------------------------------------------------------ raw states
    def observe(self, track, states) -> np.ndarray:
        """Observations ``(N, obs_dim)`` float32 of cars given as raw states (see
        :meth:`act`); all N cars are in one race on ``track``."""
        ns, _ = self._load_states(self.track(track), states)
        from envs.observation import build_observations

        return build_observations(ns, None, self.obs_config)

    def act(self, track, states, skill=1.0, ids=None) -> np.ndarray:
        """Actions ``(N, 2)`` float32 ``[steer, throttle_brake]`` in [-1, 1] for N cars.

        Args:
            track: a :class:`racing.track.Track` or a track spec (built-in name, CSV path).
            states: a mapping of field name to N values (or one number for all cars), or a
                sequence of N mappings (one per car): :data:`REQUIRED_FIELDS`, optionally
                :data:`OPTIONAL_FIELDS`. Values must be finite.
            skill: one number in [0, 1] for all cars, or one per car (1 = unmodified).
            ids: stable identifiers of the cars (hashable; default ``0 .. N-1``), for the
                per-car reaction lag and noise of skills below 1.
        """
        from envs.observation import build_observations

        track = self.track(track)
        ns, cols = self._load_states(track, states)
        obs = build_observations(ns, None, self.obs_config)
        actions = self.policy(obs)
        n = actions.shape[0]
        speed = np.hypot(cols["vx"], cols["vy"])
        return self._apply_skill(track, actions, ns.F[_F_S], speed, skill, ids, n)

    # ------------------------------------------------------------ simulator
    def act_sim(self, sim, cars, skill=1.0, ids=None) -> np.ndarray:
        """Actions for cars (global indices) of a :class:`racing.sim.RaceSim`, built from the
        simulator's full state exactly as the environments do. ``ids`` default to the car
        indices."""
        from envs.observation import build_observations

        cars = np.ascontiguousarray(cars, dtype=np.int64).reshape(-1)
        obs = build_observations(sim, cars, self.obs_config)
        actions = self.policy(obs)
        tracks = {int(sim.race_track[c // sim.cars_per_race]) for c in cars}
        if len(tracks) > 1 and not _all_full_skill(skill):
            # the speed cap reads the reference of each car's track: one call per track
            out = np.empty_like(actions)
            for t in tracks:
                rows = np.nonzero(np.array([sim.race_track[c // sim.cars_per_race] == t for c in cars]))[0]
                sub_skill = skill if np.ndim(skill) == 0 else np.asarray(skill)[rows]
                sub_ids = cars[rows] if ids is None else [ids[r] for r in rows]
                out[rows] = self._skill_rows(sim, cars[rows], actions[rows], sub_skill, sub_ids)
            return out
        return self._skill_rows(sim, cars, actions, skill, cars.tolist() if ids is None else ids)

    def _skill_rows(self, sim, cars, actions, skill, ids):
        from racing.dynamics import F_VX, F_VY

        track = sim.track_of(int(cars[0] // sim.cars_per_race)) if len(cars) else None
        speed = np.hypot(sim.F[F_VX, cars], sim.F[F_VY, cars])
        return self._apply_skill(track, actions, sim.F[_F_S, cars], speed, skill, ids, len(cars))

    # ------------------------------------------------------------ skill
    def reset(self, ids=None) -> None:
        """Forget the reaction lag and noise of cars ``ids`` (default: all); their noise restarts
        from the seed."""
        if ids is None:
            self._memory.clear()
        else:
            for i in ids:
                self._memory.pop(_key(i), None)

    def bound_memory(self, max_cars: int, recent=()) -> None:
        """Keep the per-car memory of at most ``max_cars`` cars: the cars ``recent`` become
        the most recently driven, the least recently driven beyond the bound are forgotten
        (a long-running server meets many car ids)."""
        mem = self._memory
        for i in recent:
            key = _key(i)
            if key in mem:
                mem[key] = mem.pop(key)
        while len(mem) > max(int(max_cars), 0):
            mem.pop(next(iter(mem)))

    def _apply_skill(self, track, actions, s, speed, skill, ids, n) -> np.ndarray:
        skills = _skill_array(skill, n)
        if np.all(skills >= 1.0):
            if self._memory:  # cars driven at full skill keep no memory
                for i in (range(n) if ids is None else ids):
                    self._memory.pop(_key(i), None)
            return actions
        if ids is None:
            ids = range(n)
        ids = list(ids)
        if len(ids) != n:
            raise ConfigError(f"got {len(ids)} ids for {n} cars")
        out = np.array(actions, dtype=np.float32, copy=True)
        ref = self.reference(track)
        for row in range(n):
            k = float(skills[row])
            key = _key(ids[row])
            if k >= 1.0:
                self._memory.pop(key, None)
                continue
            st = skill_settings(k)
            mem = self._memory.get(key)
            if mem is None:
                mem = self._memory[key] = _CarMemory(out[row], _car_rng(self.seed, key))
            # reaction lag: the applied action follows the policy's with time constant reaction_s
            dt = 1.0 / self.control_hz
            mem.lagged += (out[row] - mem.lagged) * (dt / (dt + st.reaction_s))
            a = mem.lagged
            # smooth action noise, AR(1) with stationary std noise_std
            rho = NOISE_CORRELATION
            mem.noise = rho * mem.noise + math.sqrt(1.0 - rho * rho) * st.noise_std * mem.rng.standard_normal(2)
            a = np.clip(a + mem.noise, -1.0, 1.0)
            # speed cap: a fraction of the reference profile a little ahead
            v = float(speed[row])
            s_look = float(s[row]) + v * CAP_PREVIEW_S
            cap = st.speed_cap * float(min(ref.speed_at(s[row]), ref.speed_at(s_look)))
            a[1] = min(a[1], float(np.clip(CAP_GAIN_PER_MPS * (cap - v), -CAP_MAX_BRAKE, 1.0)))
            out[row] = a
        return out

    # ------------------------------------------------------------ internals
    def _load_states(self, track, states):
        """Columns of the raw states written into a simulator-shaped namespace (the arrays
        :func:`envs.observation.build_observations` reads)."""
        from racing import dynamics as dy

        cols, n = _columns(states)
        key = (id(track), n)
        entry = self._scratch.get(key)
        if entry is None or entry[1] is not track:
            from racing.sim import TrackPack

            ns = SimpleNamespace(
                F=np.zeros((dy.NUM_F, n)), I=np.zeros((dy.NUM_I, n), dtype=np.int64),
                P=np.ascontiguousarray(np.tile(self.vehicle.to_array(), (n, 1))),
                race_track=np.zeros(1, dtype=np.int64), cars_per_race=n, num_cars=n, pack=TrackPack.build([track]))
            if len(self._scratch) > 64:
                self._scratch.clear()
            self._scratch[key] = entry = (ns, track)
        ns = entry[0]
        F, I, pk = ns.F, ns.I, ns.pack
        veh = self.vehicle
        F[dy.F_X] = cols["x"]
        F[dy.F_Y] = cols["y"]
        F[dy.F_YAW] = cols["yaw"]
        F[dy.F_VX] = cols["vx"]
        F[dy.F_VY] = cols["vy"]
        F[dy.F_R] = cols["yaw_rate"]
        F[dy.F_STEER_CMD] = np.clip(cols["prev_steer"], -1.0, 1.0)
        F[dy.F_THROTTLE_CMD] = np.clip(cols["prev_throttle_brake"], -1.0, 1.0)
        delta = cols.get("steer_angle")
        if delta is None:
            delta = F[dy.F_STEER_CMD] * veh.max_steer_rad
        F[dy.F_STEER] = delta
        ax = cols.get("ax")
        F[dy.F_AX] = 0.0 if ax is None else ax
        ay = cols.get("ay")
        F[dy.F_AY] = cols["vx"] * cols["yaw_rate"] if ay is None else ay
        vx, vy, r = cols["vx"], cols["vy"], cols["yaw_rate"]
        vreg = np.maximum(np.abs(vx), 0.5)
        sgn = np.where(vx >= 0.0, 1.0, -1.0)
        sf, sr = cols.get("slip_front"), cols.get("slip_rear")
        F[dy.F_ALPHAF] = np.arctan2(vy + veh.lf_m * r, vreg) - delta * sgn if sf is None else sf
        F[dy.F_ALPHAR] = np.arctan2(vy - veh.lr_m * r, vreg) if sr is None else sr
        lf_, lr_ = cols.get("load_front"), cols.get("load_rear")
        if lf_ is None or lr_ is None:
            m, wb = veh.mass_kg, veh.lf_m + veh.lr_m
            down = 0.5 * veh.air_density_kgpm3 * (vx * vx + vy * vy) * veh.lift_area_m2
            transfer = m * F[dy.F_AX] * veh.cg_height_m / wb
            fz_min = 0.05 * m * dy.G
            if lf_ is None:
                lf_ = np.maximum(m * dy.G * veh.lr_m / wb + down * veh.aero_balance_front - transfer, fz_min)
            if lr_ is None:
                lr_ = np.maximum(m * dy.G * veh.lf_m / wb + down * (1.0 - veh.aero_balance_front) + transfer, fz_min)
        F[dy.F_FZF] = lf_
        F[dy.F_FZR] = lr_
        wall = cols.get("wall_contact")
        I[dy.I_WALL] = 0 if wall is None else (np.asarray(wall) != 0)
        I[dy.I_ACTIVE] = 1
        s = np.empty(n)
        d = np.empty(n)
        seg = np.empty(n, dtype=np.int64)
        off = np.empty(n, dtype=np.int64)
        hint = np.full(n, -1, dtype=np.int64)
        _project_cars(np.ascontiguousarray(F[dy.F_X]), np.ascontiguousarray(F[dy.F_Y]), hint, pk.x, pk.y,
                      pk.w_left, pk.w_right, int(pk.offset[0]), int(pk.count[0]), float(pk.ds[0]), s, d, seg, off)
        F[dy.F_S] = s
        F[dy.F_D] = d
        I[dy.I_SEG] = seg
        I[dy.I_OFF] = off
        return ns, cols


class _CarMemory:
    __slots__ = ("lagged", "noise", "rng")

    def __init__(self, first_action, rng):
        self.lagged = np.array(first_action, dtype=np.float64)
        self.noise = np.zeros(2)
        self.rng = rng


def _car_rng(seed: int, key) -> np.random.Generator:
    """A car's own noise stream, from the runtime's seed and the car's id: reproducible
    whatever other cars the runtime drives in between."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        tag = [0, int(key) & 0xFFFFFFFF]
    else:
        tag = [1, zlib.crc32(repr(key).encode())]
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *tag])


def _key(i):
    return int(i) if isinstance(i, (np.integer,)) else i


def _all_full_skill(skill) -> bool:
    return bool(np.all(np.asarray(skill, dtype=np.float64) >= 1.0)) if np.ndim(skill) else float(skill) >= 1.0


def _skill_array(skill, n: int) -> np.ndarray:
    if np.ndim(skill) == 0:
        skill_settings(skill)  # validates
        return np.full(n, float(skill))
    arr = np.asarray(skill)
    if arr.shape != (n,):
        raise ConfigError(f"skill must be one number or one per car ({n}), got shape {arr.shape}")
    for v in arr.tolist():
        skill_settings(v)
    return arr.astype(np.float64)


def _columns(states) -> tuple[dict, int]:
    """Validated float64 columns of the raw states and the number of cars."""
    if isinstance(states, (list, tuple)):
        if not states:
            raise ConfigError("states: no cars given")
        if not all(isinstance(row, dict) for row in states):
            raise ConfigError("states: a sequence of states must hold one mapping per car")
        keys = set().union(*states)
        cols_in = {}
        for k in keys:
            if k in OPTIONAL_FIELDS and not all(k in row for row in states):
                raise ConfigError(f"states: optional field '{k}' must be given for every car or for none")
            cols_in[k] = [row.get(k) for row in states]
        states = cols_in
    if not isinstance(states, dict):
        raise ConfigError(f"states must be a mapping of field -> values or a list of per-car mappings, "
                          f"got {type(states).__name__}")
    unknown = sorted(set(states) - set(STATE_FIELDS))
    if unknown:
        raise ConfigError(f"states: unknown field(s) {unknown}; required: {list(REQUIRED_FIELDS)}, "
                          f"optional: {list(OPTIONAL_FIELDS)}")
    missing = [k for k in REQUIRED_FIELDS if k not in states]
    if missing:
        raise ConfigError(f"states: missing required field(s) {missing}")
    n = None
    for k, v in states.items():
        if np.ndim(v) > 0:
            m = len(v)
            if n is not None and m != n:
                raise ConfigError(f"states: field '{k}' has {m} values, others have {n}")
            n = m
    n = 1 if n is None else n
    if n == 0:
        raise ConfigError("states: no cars given")
    cols = {}
    for k, v in states.items():
        try:
            arr = np.array(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"states: field '{k}' must hold numbers") from None
        if arr.ndim > 1:
            raise ConfigError(f"states: field '{k}' must be one number per car, got shape {arr.shape}")
        arr = np.broadcast_to(arr, (n,)).copy()
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"states: field '{k}' must be finite (got NaN or infinity)")
        cols[k] = arr
    return cols, n


def _paths(path) -> tuple[Path, Path]:
    p = Path(path).expanduser()
    if p.suffix == ".json":
        return p.with_suffix(".onnx"), p
    if p.suffix != ".onnx":
        raise ConfigError(f"{path}: give the exported driver's .onnx file (or its .json spec)")
    return p, p.with_suffix(".json")

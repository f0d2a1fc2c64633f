"""The episode logic every environment shares, vectorised over all cars of one RaceSim.

:class:`RaceCore` owns a :class:`racing.sim.RaceSim` of ``num_races x cars_per_race`` cars
and does, for all of them at once: starting states (per race, from a per-race numpy
Generator), one control step, observations (:mod:`envs.observation`), reward terms
(:mod:`envs.rewards`), lap bookkeeping, and the two true ends of an episode (laps done,
stuck). The Gymnasium env (one race of one car), the vector env (``num_envs`` races of one
car) and the PettingZoo env (one race of ``N`` cars) are thin layers over it, so they
behave identically for the same seed.

Time limits are *not* handled here: they truncate, which is the wrapper's or the vector /
parallel env's business.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numba as nb
import numpy as np

from envs.observation import ObsConfig, build_observations, observe_into
from envs.rewards import NUM_TERMS, RewardWeights, peak_slip_angles, reward_kernel
from racing.dynamics import (
    E_A, E_AUX, E_TYPE, E_VALUE, EV_LAP, F_DIST, F_LAP_T0, F_S, F_VX, F_VY, G, I_LAP_VALID, I_LAPS, I_OFF,
    I_TIMING, I_WALL,
)
from racing.errors import ConfigError, TrackError
from racing.sim import NonFiniteControlsError, RaceSim, SimConfig, grid_positions
from racing.track import Track
from racing.trackio import load_track
from racing.vehicle import load_vehicle

#: Start modes: ``random`` (anywhere on the lap, rolling) and ``grid`` (standing start).
START_MODES = ("random", "grid")
#: Keys ``reset(options=...)`` understands.
RESET_OPTION_KEYS = ("start", "s", "d", "speed", "heading_offset")
#: A car must gain this much race distance [m] within ``stuck_time_s`` or it is stuck.
STUCK_MIN_PROGRESS_M = 1.0
#: Random starts roll at a speed drawn up to this share of the tyre grip (no downforce)
#: for the corners within :data:`START_HORIZON_M` ahead, braking at the same share.
START_GRIP_FRACTION = 0.6
START_HORIZON_M = 400.0
#: Rows of the per-car episode state (one array, so that a kernel takes it as one argument):
#: race distance [m] at the last progress check, time [s] since the car last gained
#: STUCK_MIN_PROGRESS_M, race distance [m] at the reset, last and best (valid) lap time [s].
S_ANCHOR, S_TIMER, S_DIST0, S_LAST_LAP, S_BEST_LAP = range(5)


def resolve_track(track) -> Track:
    """A :class:`Track` from a spec (built-in name, ``random:SEED``, CSV path) or a Track."""
    return track if isinstance(track, Track) else load_track(track)


def safe_start_speed(track: Track, vehicle, s: float, top_speed_mps: float | None = None) -> float:
    """A speed [m/s] at arc length ``s`` from which the car can take every corner within
    :data:`START_HORIZON_M` ahead on the centreline using :data:`START_GRIP_FRACTION` of its
    grip without downforce, braking at the same grip: ``min_k sqrt(v_corner_k^2 + 2 a
    dist_k)``; at most 80% of the top speed (``top_speed_mps``, default the vehicle's)."""
    a = START_GRIP_FRACTION * vehicle.mu * G
    k = np.arange(int(START_HORIZON_M / track.ds) + 1)
    idx = (int(s / track.ds) + k) % track.n
    kappa = np.abs(track.kappa[idx])
    v_corner2 = a / np.maximum(kappa, 1e-9)
    v2 = np.min(v_corner2 + 2.0 * a * k * track.ds)
    top = vehicle.top_speed_mps if top_speed_mps is None else top_speed_mps
    return float(min(math.sqrt(v2), 0.8 * top))


def _finite_number(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number, got {v!r}")
    return float(v)


class StepResult(NamedTuple):
    """What one :meth:`RaceCore.step` produced, one row per car."""

    terms: np.ndarray  # (num_cars, NUM_TERMS) weighted reward terms
    rewards: np.ndarray  # (num_cars,) sum of the env's reported terms
    terminated: np.ndarray  # (num_cars,) bool: laps done or stuck
    stuck: np.ndarray  # (num_cars,) bool
    finished: np.ndarray  # (num_cars,) bool: requested laps completed
    lap_done: np.ndarray  # (num_cars,) bool: a lap was completed in this step
    events: object  # racing.sim.StepEvents


class RaceCore:
    """Episode logic over one RaceSim (see the module docstring).

    Args:
        num_races, cars_per_race: batch shape.
        track: spec (built-in name, ``random:SEED``, CSV path), a :class:`Track`, or
            ``"random"`` for a new procedural circuit per reset of each race.
        vehicle: preset name, YAML path, VehicleParams, or a list (one per car of a race).
        laps: episode terminates for a car once it has completed this many timed laps
            (None: never).
        start: default start mode, ``"random"`` or ``"grid"``.
        obs_config: :class:`ObsConfig`.
        reward_weights: :class:`RewardWeights` or mapping.
        num_reward_terms: how many of :data:`envs.rewards.TERM_NAMES` the env reports.
        stuck_time_s: [s] terminate a car that gains less than
            :data:`STUCK_MIN_PROGRESS_M` of race distance in this time.
        sim_config: :class:`SimConfig` or mapping of its fields.
    """

    def __init__(self, num_races: int, cars_per_race: int, track="club", vehicle="gt3", *, laps=None,
                 start: str = "random", obs_config: ObsConfig | None = None, reward_weights=None,
                 num_reward_terms: int = NUM_TERMS, stuck_time_s: float = 10.0, sim_config=None):
        if not isinstance(track, (str, Track, os.PathLike)):
            raise TrackError(f"track must be a spec string (built-in name, random, random:SEED or a CSV path) "
                             f"or a Track, got {type(track).__name__}")
        self.random_track = isinstance(track, str) and track.strip().lower() == "random"
        first = load_track("random:0") if self.random_track else resolve_track(track)
        if laps is not None:
            if isinstance(laps, bool) or not isinstance(laps, (int, np.integer)) or laps < 1:
                raise ConfigError(f"laps must be a positive integer or None, got {laps!r}")
            laps = int(laps)
        self.laps = laps
        if start not in START_MODES:
            raise ConfigError(f"start must be one of {START_MODES}, got {start!r}")
        self.start = start
        self.stuck_time_s = _finite_number("stuck_time_s", stuck_time_s)
        if self.stuck_time_s <= 0:
            raise ConfigError(f"stuck_time_s must be > 0 s, got {stuck_time_s}")
        if sim_config is None:
            sim_config = SimConfig()
        elif isinstance(sim_config, dict):
            allowed = list(SimConfig.__dataclass_fields__)
            unknown = sorted(set(sim_config) - set(allowed))
            if unknown:
                raise ConfigError(f"unknown sim_config key(s) {unknown}; allowed: {allowed}")
            sim_config = SimConfig(**sim_config)
        elif not isinstance(sim_config, SimConfig):
            raise ConfigError(f"sim_config must be a SimConfig or a mapping, got {type(sim_config).__name__}")
        self.obs_config = obs_config or ObsConfig()
        self.weights = RewardWeights.from_dict(reward_weights)
        self._w = self.weights.as_array()
        self.num_reward_terms = int(num_reward_terms)
        if isinstance(vehicle, (list, tuple)):
            vehicle = [load_vehicle(v) for v in vehicle]
        else:
            vehicle = load_vehicle(vehicle)
        self.sim = RaceSim(first, vehicle, num_races=num_races, cars_per_race=cars_per_race, config=sim_config)
        self.num_races = self.sim.num_races
        self.cars_per_race = self.sim.cars_per_race
        self.num_cars = self.sim.num_cars
        self.all_cars = np.arange(self.num_cars, dtype=np.int64)
        self.control_dt = self.sim.config.control_dt
        self._peak = peak_slip_angles(self.sim.P)
        self._top_speed = {id(v): v.top_speed_mps for v in self.sim.vehicles}  # [m/s] (a bisection: cache it)
        n = self.num_cars
        self._state = np.zeros((5, n))  # S_* rows, also as the views below
        self.anchor_dist = self._state[S_ANCHOR]  # [m] race distance at the last progress check
        self.stuck_timer = self._state[S_TIMER]  # [s] time since the car last gained STUCK_MIN_PROGRESS_M
        self.dist0 = self._state[S_DIST0]  # [m] race distance at reset
        self.last_lap_s = self._state[S_LAST_LAP]
        self.best_lap_s = self._state[S_BEST_LAP]  # valid laps only
        self.last_lap_s[:] = np.nan
        self.best_lap_s[:] = np.nan
        self.obs = np.zeros((n, self.obs_config.dim), dtype=np.float32)
        self._row_of_car = np.arange(n, dtype=np.int64)  # every car is scored, in order

    # ------------------------------------------------------------ resets
    def reset_races(self, races, rngs, options=None) -> None:
        """Start new episodes in ``races`` (each with its Generator in ``rngs``, same order).

        ``options`` keys (:data:`RESET_OPTION_KEYS`): ``start`` (mode), and ``s`` [m],
        ``d`` [m], ``speed`` [m/s], ``heading_offset`` [rad] overriding the start state of
        the (first) car; with several cars per race the others keep their places relative
        to it. Scalars, or arrays with one value per race in ``races``.
        """
        races = [int(b) for b in races]
        opts = dict(options or {})
        unknown = sorted(set(opts) - set(RESET_OPTION_KEYS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; allowed: {list(RESET_OPTION_KEYS)}")
        if self.random_track:
            per_race = [self.sim.track_of(b) for b in range(self.num_races)]
            for b, rng in zip(races, rngs):
                per_race[b] = load_track(f"random:{int(rng.integers(0, 2**31 - 1))}")
            # one repack of the track tables for all races (set_track repacks per call)
            self.sim.set_tracks(per_race)
        for k, (b, rng) in enumerate(zip(races, rngs)):
            self._place(b, rng, {key: _pick(val, k, len(races), key) for key, val in opts.items()})

    def _place(self, b: int, rng: np.random.Generator, opts: dict) -> None:
        sim = self.sim
        track = sim.track_of(b)
        n = self.cars_per_race
        mode = opts.get("start", self.start)
        if mode not in START_MODES:
            raise ValueError(f"reset option start must be one of {START_MODES}, got {mode!r}")
        gs, gd = grid_positions(track, n)
        gs = np.asarray(gs, dtype=np.float64)
        if mode == "grid":
            s = gs
            d = np.asarray(gd, dtype=np.float64)
            speed = 0.0
            standing = True
        else:
            s_lead = float(rng.uniform(0.0, track.length))
            s = np.mod(gs - gs[0] + s_lead, track.length)
            d = np.asarray(gd, dtype=np.float64)
            cars = sim.cars_of(b)
            v_safe = min(safe_start_speed(track, sim.vehicles[cars[k]], float(s[k]), self._top_speed[id(sim.vehicles[cars[k]])])
                         for k in range(n))
            speed = float(rng.uniform(0.0, 1.0)) * v_safe
            standing = False
        if "s" in opts:
            s = np.mod(s - s[0] + _finite_number("reset option s", opts["s"]), track.length)
        if "d" in opts:
            d = d - d[0] + _finite_number("reset option d", opts["d"])
        if "speed" in opts:
            speed = _finite_number("reset option speed", opts["speed"])
        hoff = _finite_number("reset option heading_offset", opts.get("heading_offset", 0.0))
        sim.reset_race(b, s=s, d=d, speed=speed, standing=standing, heading_offset=hoff)
        cars = np.asarray(sim.cars_of(b))
        dist = sim.F[F_DIST, cars]
        self.anchor_dist[cars] = dist
        self.dist0[cars] = dist
        self.stuck_timer[cars] = 0.0
        self.last_lap_s[cars] = np.nan
        self.best_lap_s[cars] = np.nan

    # ------------------------------------------------------------ stepping
    def step(self, controls) -> StepResult:
        """One control step of every race with ``controls`` ``(num_cars, 2)``: NaN or inf
        raises ValueError (before anything moves); finite values are clipped to [-1, 1]."""
        u = np.asarray(controls, dtype=np.float64)
        if u.shape != (self.num_cars, 2):
            raise ValueError(f"actions must have shape ({self.num_cars}, 2) ([steer, throttle_brake] per car), "
                             f"got {u.shape}")
        sim = self.sim
        try:
            events = sim.step(u)  # checks finiteness before anything moves
        except NonFiniteControlsError as exc:
            raise ValueError(f"actions must be finite (no NaN or inf): car {exc.car} got {exc.controls}") from None
        n = self.num_cars
        terms = np.empty((n, NUM_TERMS))
        rewards = np.empty(n)
        flags = np.empty((4, n), dtype=np.bool_)  # terminated, stuck, finished, lap_done
        _score_kernel(terms, rewards, self.num_reward_terms, self.all_cars, self._row_of_car, sim.F, sim.I, sim.P,
                      self._peak, events.rows, self._w, self._state, self.control_dt, self.stuck_time_s,
                      -1 if self.laps is None else self.laps, flags)
        return StepResult(terms, rewards, flags[0], flags[1], flags[2], flags[3], events)

    def observe(self, cars=None) -> np.ndarray:
        """Observations of all cars (the internal buffer: copy to keep) or of ``cars``."""
        if cars is None:  # every step of the Gymnasium envs: skip the checks of build_observations
            return observe_into(self.obs, self.sim, self.all_cars, self.obs_config)
        return build_observations(self.sim, cars, self.obs_config)

    # ------------------------------------------------------------ info
    def info_arrays(self) -> dict:
        """Per-car episode information (arrays over all cars):

        ``lap`` completed timed laps; ``lap_valid`` the current lap is still valid;
        ``lap_time_s`` current lap time so far (NaN before timing starts); ``last_lap_s``,
        ``best_lap_s`` (valid laps; NaN when none yet); ``speed_mps``; ``s_m`` arc
        length; ``progress_m`` race distance gained since the reset; ``off_track``;
        ``wall_contact`` (during the last step).
        """
        sim = self.sim
        race = self.all_cars // self.cars_per_race
        timing = sim.I[I_TIMING] == 1
        return {
            "lap": sim.I[I_LAPS].copy(),
            "lap_valid": sim.I[I_LAP_VALID] == 1,
            "lap_time_s": np.where(timing, sim.race_time[race] - sim.F[F_LAP_T0], np.nan),
            "last_lap_s": self.last_lap_s.copy(),
            "best_lap_s": self.best_lap_s.copy(),
            "speed_mps": sim.speed,
            "s_m": sim.s.copy(),
            "progress_m": sim.F[F_DIST] - self.dist0,
            "off_track": sim.I[I_OFF] != 0,
            "wall_contact": sim.I[I_WALL] != 0,
        }

    def car_info(self, c: int) -> dict:
        """:meth:`info_arrays` of car ``c`` as Python scalars; NaN (no value) becomes None."""
        sim = self.sim
        # one kernel call gathers the values (as Python scalars): numpy scalar indexing
        # and arithmetic would cost more than the rest of the method together
        lap, lap_valid, timing, lap_time, last, best, speed, s, progress, off, wall = _car_info_kernel(
            sim.F, sim.I, sim.race_time, self.cars_per_race, self._state, c)
        return {
            "lap": lap,
            "lap_valid": lap_valid,
            "lap_time_s": lap_time if timing else None,
            "last_lap_s": None if last != last else last,
            "best_lap_s": None if best != best else best,
            "speed_mps": speed,
            "s_m": s,
            "progress_m": progress,
            "off_track": off,
            "wall_contact": wall,
        }

    def lap_record(self, car: int) -> dict:
        """The lap car ``car`` completed last: ``lap`` (1-based), ``time_s``, ``valid``,
        ``sectors_s``."""
        rec = self.sim.laps[car][-1]
        return {"lap": rec.lap, "time_s": rec.time_s, "valid": rec.valid, "sectors_s": list(rec.sectors_s)}


@nb.njit(cache=True, nogil=True)
def _score_kernel(terms, rewards, n_sum, cars, row_of_car, F, I, P, peak, events, w, state, dt, stuck_time, laps,
                  flags):
    """Everything :meth:`RaceCore.step` computes after the simulator step, in one call:
    the reward terms (:func:`envs.rewards.reward_kernel`, arguments ``terms`` to ``w``)
    and the episode bookkeeping (:func:`_episode_kernel`)."""
    reward_kernel(terms, rewards, n_sum, cars, row_of_car, F, I, P, peak, events, w)
    _episode_kernel(F, I, state, dt, stuck_time, laps, events, flags)


@nb.njit(cache=True, nogil=True)
def _episode_kernel(F, I, state, dt, stuck_time, laps, events, flags):
    """Episode bookkeeping of one control step for every car (``state``: the ``S_*`` rows;
    ``flags``: rows terminated, stuck, finished, lap_done, written). Stuck: less than
    STUCK_MIN_PROGRESS_M of race distance gained within ``stuck_time`` (the anchor moves on
    whenever the car gets that far past it). Finished: ``laps`` timed laps completed
    (``laps < 0``: never). Terminated: either. Lap events (``events`` rows) set
    ``lap_done`` and the last lap time, and the best one if the lap was valid."""
    anchor = state[S_ANCHOR]
    timer = state[S_TIMER]
    last_lap = state[S_LAST_LAP]
    best_lap = state[S_BEST_LAP]
    terminated, stuck, finished, lap_done = flags[0], flags[1], flags[2], flags[3]
    for c in range(F.shape[1]):
        dist = F[F_DIST, c]
        if dist >= anchor[c] + STUCK_MIN_PROGRESS_M:
            anchor[c] = dist
            timer[c] = 0.0
        else:
            timer[c] += dt
        stuck[c] = timer[c] >= stuck_time - 1e-9
        finished[c] = laps >= 0 and I[I_LAPS, c] >= laps
        terminated[c] = stuck[c] or finished[c]
        lap_done[c] = False
    for k in range(events.shape[0]):
        if events[k, E_TYPE] != EV_LAP:
            continue
        c = int(events[k, E_A])
        t = events[k, E_VALUE]
        lap_done[c] = True
        last_lap[c] = t
        if events[k, E_AUX] > 0.5 and not (t >= best_lap[c]):
            best_lap[c] = t


@nb.njit(cache=True, nogil=True)
def _car_info_kernel(F, I, race_time, cars_per_race, state, c):
    """The values of :meth:`RaceCore.car_info` of car ``c``: ``(lap, lap_valid, timing,
    lap_time_s, last_lap_s, best_lap_s, speed_mps, s_m, progress_m, off_track,
    wall_contact)`` (NaN: no value; ``lap_time_s`` means something only while ``timing``)."""
    return (I[I_LAPS, c], I[I_LAP_VALID, c] == 1, I[I_TIMING, c] == 1,
            race_time[c // cars_per_race] - F[F_LAP_T0, c], state[S_LAST_LAP, c], state[S_BEST_LAP, c],
            math.hypot(F[F_VX, c], F[F_VY, c]), F[F_S, c], F[F_DIST, c] - state[S_DIST0, c], I[I_OFF, c] != 0,
            I[I_WALL, c] != 0)


def _pick(value, k: int, n: int, key: str):
    """Option value for the k-th of n races: a scalar, or one entry of a length-n array."""
    if isinstance(value, str) or np.ndim(value) == 0:
        return value
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ValueError(f"reset option {key} must be a scalar or have one value per reset environment ({n}), "
                         f"got shape {arr.shape}")
    v = arr[k]
    return v.item() if hasattr(v, "item") else v

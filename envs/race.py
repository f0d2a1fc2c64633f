"""``racing/Race-v0``: one learner among K scripted opponents.

:class:`RaceVectorEnv` runs ``num_envs`` races of ``1 + opponents`` cars in one simulator
batch (``gymnasium.make_vec("racing/Race-v0", num_envs=N)``); :class:`RaceEnv` is the
single Gymnasium env (one race). In each race car 0 is the learner; the opponents are
:class:`agents.scripted.ScriptedDriver` cars at ``opponent_skill`` with race-craft.

## Description
A race of ``1 + opponents`` cars of the same vehicle on one track. The learner's
observation is the time trial's (ego dynamics, previous action, flags, course points) plus
the ``obs_opponents`` nearest cars ahead and behind (relative position and velocity in the
learner's frame, with a presence flag), see :func:`envs.observation.observation_spec`.

## Action Space
``Box(-1, 1, (2,), float32)``: ``[steer, throttle_brake]``, as in ``TimeTrial-v0``.
NaN/inf raise ``ValueError``; finite values are clipped.

## Rewards
The time trial's terms plus, per control step (weights from
:class:`envs.rewards.RewardWeights`):

* ``collision``: ``-1`` while touching another car; ``rear_end``: ``-closing_speed^2``
  when the learner runs into the back of a car (see :mod:`envs.rewards`);
* ``passing``: ``+1`` for each car the learner passes and ``-1`` for each car that passes
  it, counted only while that car is within the window from 20 m behind to 40 m ahead
  (GT Sophy's symmetric passing bonus);
* ``unsporting``: ``-1`` for each contact the stewards blame on the learner
  (:func:`racing.rules.classify_contact`).

``info["reward_terms"]`` holds every weighted term; they sum to the reward.

## Starting State
``start="grid"`` (default): a standing start from a two-wide grid behind the line, the
learner on a random grid slot. ``"rolling"``: the same formation at a random place on the
lap, rolling. ``"mid_race"``: the opponents scattered within 60 m ahead of and behind the
learner at random lateral offsets, rolling, at a random place on the lap. ``reset(options=
{"start": ...})`` overrides it for one episode.

## Episode End
Termination (a true end) when the learner has completed ``laps`` laps (default 3) or is
stuck (less than 1 m of progress in ``stuck_time_s``); truncation at
``max_episode_steps`` (default 3000 = 300 s).

## Info
The time trial's keys for the learner plus ``position`` (1 = leading), ``gap_ahead_m`` /
``gap_behind_m`` (race distance to the next car ahead / behind; NaN when none),
``contacts`` (car contacts of the learner this step), ``at_fault`` (of those, the ones the
stewards blame on it) and ``passes`` (net places gained in the passing window).

## Arguments
``track``, ``vehicle``, ``opponents`` (1-19, default 3), ``opponent_skill`` (rookie,
amateur, pro, alien or a number in (0, 1]; default pro), ``start``, ``laps``,
``obs_opponents`` (cars listed ahead and behind, default 2), ``course_points``,
``reward_weights``, ``stuck_time_s``, ``sim_config``, ``opponent_seed``, ``render_mode``.

## Version History
* v0: initial version.
"""

from __future__ import annotations

import numpy as np
import gymnasium as gym
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from envs.core import RaceCore
from envs.observation import ObsConfig
from envs.rewards import TERM_NAMES, RewardWeights
from envs.time_trial import DEFAULT_MAX_EPISODE_STEPS
from envs.vector import TimeTrialVectorEnv
from racing.dynamics import E_A, E_B, E_TYPE, EV_CAR, F_DIST, F_VX, P_LEN
from racing.errors import ConfigError

RACE_TERMS: tuple[str, ...] = TERM_NAMES + ("passing", "unsporting")
START_MODES = ("grid", "rolling", "mid_race")
#: GT Sophy's passing window: from this far behind ...
PASS_WINDOW_BEHIND_M = 20.0
#: ... to this far ahead of the learner [m].
PASS_WINDOW_AHEAD_M = 40.0
#: Mid-race starts scatter opponents within this distance of the learner [m].
MID_RACE_SPREAD_M = 60.0


class RaceVectorEnv(TimeTrialVectorEnv):
    """``num_envs`` races, one learner (car 0 of each race) among scripted opponents, in one
    simulator batch. Autoreset and ``reset_mask`` as :class:`envs.vector.TimeTrialVectorEnv`;
    spaces, rewards and episode ends as described in the module docstring."""

    def __init__(self, num_envs: int = 1, track="club", vehicle="gt3", *, opponents: int = 3,
                 opponent_skill="pro", start: str = "grid", laps=3, obs_opponents: int = 2,
                 course_points: int = 20, lookahead_time_s: float = 6.0, min_lookahead_m: float = 30.0,
                 reward_weights=None, stuck_time_s: float = 10.0, sim_config=None, opponent_seed: int = 0,
                 max_episode_steps=DEFAULT_MAX_EPISODE_STEPS, autoreset_mode=AutoresetMode.NEXT_STEP,
                 render_mode: str | None = None):
        from agents.scripted import ScriptedDriver

        if isinstance(opponents, bool) or not isinstance(opponents, (int, np.integer)) or not 1 <= opponents <= 19:
            raise ConfigError(f"opponents must be an integer in 1..19, got {opponents!r}")
        if start not in START_MODES:
            raise ConfigError(f"start must be one of {START_MODES}, got {start!r}")
        self.weights = RewardWeights.from_dict(reward_weights)
        super().__init__(num_envs, track, vehicle, max_episode_steps=max_episode_steps,
                         autoreset_mode=autoreset_mode, laps=laps, start="random", course_points=course_points,
                         lookahead_time_s=lookahead_time_s, min_lookahead_m=min_lookahead_m,
                         reward_weights=self.weights, stuck_time_s=stuck_time_s, sim_config=sim_config,
                         render_mode=render_mode)
        self.start = start
        self.opponents = int(opponents)
        n_cars = 1 + self.opponents
        obs_config = ObsConfig(course_points=course_points, lookahead_time_s=lookahead_time_s,
                               min_lookahead_m=min_lookahead_m, num_opponents=obs_opponents)
        # replace the time trial's one-car core by races of 1 + opponents cars
        self.core = RaceCore(self.num_envs, n_cars, track, vehicle, laps=laps, start="grid", obs_config=obs_config,
                             reward_weights=self.weights, num_reward_terms=len(TERM_NAMES),
                             stuck_time_s=stuck_time_s, sim_config=sim_config)
        dim = obs_config.dim
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.reward_term_names = RACE_TERMS
        self._me = np.arange(self.num_envs, dtype=np.int64) * n_cars
        self._opp = np.array([c for c in range(self.core.num_cars) if c % n_cars], dtype=np.int64)
        self.opponent_driver = ScriptedDriver(opponent_skill, seed=int(opponent_seed))
        self._controls = np.zeros((self.core.num_cars, 2))
        self._prev_dist = np.zeros(self.core.num_cars)
        self._contacts = np.zeros(self.num_envs, dtype=np.int64)
        self._at_fault = np.zeros(self.num_envs, dtype=np.int64)
        self._passes = np.zeros(self.num_envs, dtype=np.int64)
        self._race_w = np.array([self.weights.passing, self.weights.unsporting])

    # ------------------------------------------------------------ hooks
    def _reset_races(self, idx, options=None) -> None:
        opts = dict(options or {})
        mode = opts.pop("start", self.start)
        if mode not in START_MODES:
            raise ValueError(f"reset option start must be one of {START_MODES}, got {mode!r}")
        rngs = [self._rngs[i] for i in idx]
        self.core.reset_races(idx, rngs, dict(opts, start="grid" if mode == "grid" else "random"))
        sim = self.core.sim
        n = self.core.cars_per_race
        for i, rng in zip(idx, rngs):
            cars = np.asarray(sim.cars_of(int(i)))
            track = sim.track_of(int(i))
            s = sim.s[cars].copy()
            d = sim.d[cars].copy()
            speed = float(sim.F[F_VX, cars[0]])
            if mode == "mid_race":
                ahead = rng.uniform(-MID_RACE_SPREAD_M, MID_RACE_SPREAD_M, n - 1)
                w = max(0.5, float(min(track.w_left.min(), track.w_right.min())) - 1.5)
                s[1:] = np.mod(s[0] + ahead, track.length)
                d[1:] = rng.uniform(-w, w, n - 1)
            else:  # the learner takes a random slot of the formation
                k = int(rng.integers(0, n))
                s[[0, k]] = s[[k, 0]]
                d[[0, k]] = d[[k, 0]]
            sim.reset_race(int(i), s=s, d=d, speed=speed, standing=(mode == "grid"))
            dist = sim.F[F_DIST, cars]
            self.core.anchor_dist[cars] = dist
            self.core.dist0[cars] = dist
            self.opponent_driver.reset(cars[1:])  # fresh controller memory: same seed, same race
        self._prev_dist[:] = sim.F[F_DIST]
        self._contacts[idx] = 0
        self._at_fault[idx] = 0
        self._passes[idx] = 0

    def _core_controls(self, actions: np.ndarray) -> np.ndarray:
        sim = self.core.sim
        self._prev_dist[:] = sim.F[F_DIST]
        self._controls[self._me] = actions
        self._controls[self._opp] = self.opponent_driver.act(sim, self._opp)
        return self._controls

    def _learner_terms(self, res):
        from racing.rules import classify_contact

        sim = self.core.sim
        me = self._me
        n_cars = self.core.cars_per_race
        base = res.terms[me]  # TERM_NAMES columns
        # passing window: signed gaps of every opponent to its race's learner, before/after
        dist = sim.F[F_DIST].reshape(self.num_envs, n_cars)
        prev = self._prev_dist.reshape(self.num_envs, n_cars)
        gap_now = dist[:, 1:] - dist[:, :1]
        gap_before = prev[:, 1:] - prev[:, :1]
        window = (gap_now >= -PASS_WINDOW_BEHIND_M) & (gap_now <= PASS_WINDOW_AHEAD_M)
        passed = (gap_before > 0) & (gap_now <= 0) & window
        lost = (gap_before <= 0) & (gap_now > 0) & window
        self._passes = passed.sum(axis=1) - lost.sum(axis=1)
        # contacts of the learner and the stewards' verdicts
        self._contacts[:] = 0
        self._at_fault[:] = 0
        rows = res.events.rows
        if rows.shape[0]:
            for r in rows[rows[:, E_TYPE] == EV_CAR]:
                a, b = int(r[E_A]), int(r[E_B])
                race = a // n_cars
                learner = int(me[race])
                if learner not in (a, b):
                    continue
                self._contacts[race] += 1
                verdict = classify_contact(r, sim.track_of(race).length, float(sim.P[a, P_LEN]))
                if verdict.at_fault == learner:
                    self._at_fault[race] += 1
        terms = np.empty((self.num_envs, len(RACE_TERMS)))
        terms[:, : len(TERM_NAMES)] = base
        terms[:, len(TERM_NAMES)] = self._race_w[0] * self._passes
        terms[:, len(TERM_NAMES) + 1] = -self._race_w[1] * self._at_fault
        rewards = terms[:, 0].copy()  # left to right, like sum(info["reward_terms"].values())
        for k in range(1, terms.shape[1]):
            rewards += terms[:, k]
        return terms, rewards

    def _observe(self) -> np.ndarray:
        return self.core.observe(self._me)

    def _infos(self, stuck, finished, terms=None, lap_done=None) -> dict:
        info = super()._infos(stuck, finished, terms, lap_done)
        sim = self.core.sim
        n_cars = self.core.cars_per_race
        pos = sim.positions()
        dist = sim.F[F_DIST].reshape(self.num_envs, n_cars)
        gaps = dist[:, 1:] - dist[:, :1]
        ahead = np.where(gaps > 0, gaps, np.inf).min(axis=1)
        behind = np.where(gaps <= 0, -gaps, np.inf).min(axis=1)
        info["position"] = pos[:, 0].copy()
        info["gap_ahead_m"] = np.where(np.isfinite(ahead), ahead, np.nan)
        info["gap_behind_m"] = np.where(np.isfinite(behind), behind, np.nan)
        info["contacts"] = self._contacts.copy()
        info["at_fault"] = self._at_fault.copy()
        info["passes"] = np.asarray(self._passes).copy()
        return info


class RaceEnv(gym.Env):
    """The single-race ``racing/Race-v0`` (see the module docstring): a
    :class:`RaceVectorEnv` of one race without autoreset."""

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 10}

    def __init__(self, track="club", vehicle="gt3", *, render_mode: str | None = None, **kwargs):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode must be None, 'rgb_array' or 'human', got {render_mode!r}")
        kwargs.pop("max_episode_steps", None)  # the TimeLimit wrapper truncates
        self._vec = RaceVectorEnv(1, track, vehicle, max_episode_steps=None, **kwargs)
        self.render_mode = render_mode
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self._renderer = None

    @property
    def sim(self):
        return self._vec.core.sim

    def observation_spec(self) -> list[dict]:
        return self._vec.observation_spec()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        obs, info = self._vec.reset(seed=seed, options=options)
        return obs[0], _first(info)

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(1, 2)
        if not np.isfinite(a).all():
            raise ValueError(f"action must be finite (no NaN or inf), got {np.asarray(action).tolist()}")
        obs, rew, term, trunc, info = self._vec.step(a)
        if self.render_mode == "human":
            self.render()
        return obs[0], float(rew[0]), bool(term[0]), bool(trunc[0]), _first(info)

    def render(self):
        if self.render_mode is None:
            return None
        from racing.render import EnvRenderer, hud_from_sim

        if self._renderer is None:
            self._renderer = EnvRenderer(self.render_mode)
        return self._renderer(self.sim, race=0, focus_car=0, hud=hud_from_sim(self.sim, race=0, focus_car=0))

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._vec.close()


def _first(info: dict) -> dict:
    """Sub-env 0's entries of a vector info dict, as Python scalars (NaN becomes None, as
    in ``TimeTrial-v0``)."""
    out = {}
    for k, v in info.items():
        if k.startswith("_"):
            continue
        mask = info.get("_" + k)
        if mask is not None and not mask[0]:
            continue
        if isinstance(v, dict):
            out[k] = _first(v)
        else:
            x = v[0]
            x = x.item() if hasattr(x, "item") else x
            out[k] = None if isinstance(x, float) and x != x else x  # no value: None, not NaN
    return out

"""A PettingZoo ``ParallelEnv`` in which every car of one race is a learning agent."""

from __future__ import annotations

import functools
import warnings

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from envs.core import RESET_OPTION_KEYS, RaceCore
from envs.observation import ObsConfig, observation_spec
from envs.rewards import TERM_NAMES
from envs.time_trial import DEFAULT_MAX_EPISODE_STEPS
from racing.dynamics import I_ACTIVE
from racing.errors import ConfigError


class RacingParallelEnv(ParallelEnv):
    """``num_cars`` cars racing on one circuit; every car is an agent (``car_0`` ...).

    Made by :func:`envs.parallel_env`. Shares the simulator, observation builder and reward
    module with ``racing/TimeTrial-v0`` (see its docstring for the details):

    * **Action space** (each agent): ``Box(-1, 1, (2,), float32)`` ``[steer,
      throttle_brake]``; finite values are clipped, NaN/inf raise ``ValueError``. Every
      live agent must have an action; actions for agents that are done are ignored.
    * **Observation space** (each agent): ``Box(-inf, inf, (14 + 6 K + 10 M,), float32)``:
      the time-trial layout plus two opponent lists (the nearest ``M = num_opponents``
      active cars ahead within ``opponent_range_ahead_m`` of track gap and behind within
      ``opponent_range_behind_m``, nearest first); each slot ``[present, x / 100 m, y /
      10 m, vx / 10 m/s, vy / 10 m/s]`` in the car's frame (relative position and
      velocity), all zeros when empty. ``observation_spec()`` names every element.
    * **Rewards**: all six terms of :mod:`envs.rewards` (``progress``, ``off_course``,
      ``wall``, ``tyre_slip``, ``collision``: -4 per step in contact with another car,
      ``rear_end``: -0.1 x closing speed^2 for the car that hits another from behind), in
      ``infos[agent]["reward_terms"]``, summing exactly to the reward.
    * **Starting state**: ``start="grid"`` (default): a standing start on a two-wide grid
      behind the line, lap timing from the start. ``start="random"``: the same grid
      formation moved to an arc length drawn from the env's RNG, rolling at a common safe
      speed, flying laps. ``reset(options=...)`` takes ``start``, ``s``, ``d``, ``speed``,
      ``heading_offset`` (moving the formation with its first car); unknown keys are
      ignored with a warning (PettingZoo's API test passes arbitrary options).
    * **Episode end**: an agent *terminates* when it has completed ``laps`` timed laps
      (finished) or is stuck (less than 1 m of race distance in ``stuck_time_s``); its car
      then leaves the race (parked, no longer collidable or observed) and the agent is
      removed from ``agents``. All remaining agents are *truncated* after
      ``max_episode_steps`` steps (default 3000 = 300 s at 10 Hz).
    * **Infos** (per agent): the time-trial keys plus ``position`` (race order by race
      distance, 1 = leading; cars that left the race rank last).
    """

    metadata = {"name": "racing_parallel_v0", "render_modes": ["human", "rgb_array"], "render_fps": 10,
                "is_parallelizable": True}

    def __init__(self, track="club", vehicle="gt3", num_cars: int = 4, *, laps=None, start: str = "grid",
                 max_episode_steps=DEFAULT_MAX_EPISODE_STEPS, course_points: int = 20, lookahead_time_s: float = 6.0,
                 min_lookahead_m: float = 30.0, num_opponents: int = 2, opponent_range_ahead_m: float = 100.0,
                 opponent_range_behind_m: float = 50.0, reward_weights=None, stuck_time_s: float = 10.0,
                 sim_config=None, render_mode: str | None = None):
        if isinstance(num_cars, bool) or not isinstance(num_cars, (int, np.integer)) or not 1 <= num_cars <= 64:
            raise ConfigError(f"num_cars must be an integer in [1, 64], got {num_cars!r}")
        if max_episode_steps is not None and (isinstance(max_episode_steps, bool)
                                              or not isinstance(max_episode_steps, (int, np.integer))
                                              or max_episode_steps < 1):
            raise ConfigError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        obs_cfg = ObsConfig(course_points=course_points, lookahead_time_s=lookahead_time_s,
                            min_lookahead_m=min_lookahead_m, num_opponents=num_opponents,
                            opponent_range_ahead_m=opponent_range_ahead_m,
                            opponent_range_behind_m=opponent_range_behind_m)
        self.core = RaceCore(1, int(num_cars), track, vehicle, laps=laps, start=start, obs_config=obs_cfg,
                             reward_weights=reward_weights, num_reward_terms=len(TERM_NAMES),
                             stuck_time_s=stuck_time_s, sim_config=sim_config)
        self.metadata = dict(self.metadata, render_fps=self.core.sim.config.control_hz)
        self.possible_agents = [f"car_{k}" for k in range(int(num_cars))]
        self.agents: list[str] = []
        self._index = {a: k for k, a in enumerate(self.possible_agents)}
        dim = obs_cfg.dim
        self._obs_space = {a: spaces.Box(-np.inf, np.inf, (dim,), np.float32) for a in self.possible_agents}
        self._act_space = {a: spaces.Box(-1.0, 1.0, (2,), np.float32) for a in self.possible_agents}
        self.reward_term_names = TERM_NAMES
        self._rng: np.random.Generator | None = None
        self._steps = 0
        self._renderer = None

    @property
    def sim(self):
        """The underlying :class:`racing.sim.RaceSim` (one race, ``num_cars`` cars)."""
        return self.core.sim

    def observation_space(self, agent):
        return self._obs_space[agent]

    def action_space(self, agent):
        return self._act_space[agent]

    @functools.cached_property
    def _spec(self):
        return observation_spec(self.core.obs_config)

    def observation_spec(self) -> list[dict]:
        return list(self._spec)

    # ------------------------------------------------------------ API
    def reset(self, seed=None, options=None):
        if seed is not None or self._rng is None:
            self._rng, _ = seeding.np_random(seed)
        opts = dict(options or {})
        unknown = sorted(set(opts) - set(RESET_OPTION_KEYS))
        if unknown:
            warnings.warn(f"reset: ignoring unknown option(s) {unknown}; known: {list(RESET_OPTION_KEYS)}",
                          stacklevel=2)
            for k in unknown:
                opts.pop(k)
        self.core.reset_races([0], [self._rng], opts)
        self.agents = list(self.possible_agents)
        self._steps = 0
        obs = self.core.observe()
        base = self._car_infos(np.zeros(self.core.num_cars, dtype=bool), np.zeros(self.core.num_cars, dtype=bool))
        observations = {a: obs[self._index[a]].copy() for a in self.agents}
        infos = {a: base[self._index[a]] for a in self.agents}
        if self.render_mode == "human":
            self.render()
        return observations, infos

    def step(self, actions):
        if not self.agents:
            return {}, {}, {}, {}, {}
        core = self.core
        controls = np.zeros((core.num_cars, 2))
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"missing actions for live agent(s) {missing}")
        for a in self.agents:
            act = np.asarray(actions[a], dtype=np.float64)
            if act.shape != (2,):
                raise ValueError(f"action of {a} must have shape (2,) ([steer, throttle_brake]), got {act.shape}")
            controls[self._index[a]] = act
        res = core.step(controls)  # validates finiteness
        self._steps += 1
        truncate = self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        obs = core.observe()
        base = self._car_infos(res.stuck, res.finished)
        observations, rewards, terminations, truncations, infos = {}, {}, {}, {}, {}
        for a in self.agents:
            k = self._index[a]
            observations[a] = obs[k].copy()
            rewards[a] = float(res.rewards[k])
            terminations[a] = bool(res.terminated[k])
            truncations[a] = bool(truncate)
            info = base[k]
            info["reward_terms"] = {name: float(res.terms[k, j]) for j, name in enumerate(TERM_NAMES)}
            if res.lap_done[k]:
                info["lap_record"] = core.lap_record(k)
            infos[a] = info
        done = [a for a in self.agents if terminations[a] or truncations[a]]
        for a in done:
            if terminations[a]:
                core.sim.I[I_ACTIVE, self._index[a]] = 0  # the car leaves the race
        self.agents = [a for a in self.agents if a not in done]
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

    def _car_infos(self, stuck, finished) -> list[dict]:
        pos = self.core.sim.positions()[0]
        out = []
        for k in range(self.core.num_cars):
            info = self.core.car_info(k)
            info["position"] = int(pos[k])
            info["stuck"] = bool(stuck[k])
            info["finished"] = bool(finished[k])
            out.append(info)
        return out

    def render(self):
        if self.render_mode is None:
            warnings.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'human'",
                          stacklevel=2)
            return None
        from racing.render import EnvRenderer, hud_from_sim

        sim = self.core.sim
        focus = int(np.argmin(sim.positions()[0]))  # the leader
        hud = hud_from_sim(sim, race=0, focus_car=focus)
        if self.core.laps is not None:
            hud["num_laps"] = self.core.laps
        if self._renderer is None:
            self._renderer = EnvRenderer(self.render_mode)
        return self._renderer(sim, race=0, focus_car=focus, hud=hud)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

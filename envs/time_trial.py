"""``racing/TimeTrial-v0``: one car, one circuit, as fast as possible."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.core import RESET_OPTION_KEYS, START_MODES, RaceCore
from envs.observation import ObsConfig, observation_spec
from envs.rewards import SOLO_TERMS

#: Truncation limit registered for ``gymnasium.make`` (3000 steps = 300 s at 10 Hz: about
#: three laps of the built-in circuits at race pace, twice GT Sophy's 150 s episodes).
DEFAULT_MAX_EPISODE_STEPS = 3000


def _obs_config(course_points, lookahead_time_s, min_lookahead_m, num_opponents=0, **extra) -> ObsConfig:
    return ObsConfig(course_points=course_points, lookahead_time_s=lookahead_time_s, min_lookahead_m=min_lookahead_m,
                     num_opponents=num_opponents, **extra)


class TimeTrialEnv(gym.Env):
    """
    ## Description

    One car on a closed circuit, driven by ``[steer, throttle_brake]`` commands at 10 Hz
    (by default), in the spirit of GT Sophy's time trials (Wurman et al., Nature 2022). The simulator is
    :class:`racing.sim.RaceSim`: a dynamic single-track model with Pacejka tyres, load
    transfer, aero, run-off with less grip and walls behind it. The task is to cover the
    lap as fast as possible while staying on the track.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``:

    | Num | Action         | Min | Max | Meaning                                                    |
    |-----|----------------|-----|-----|------------------------------------------------------------|
    | 0   | steer          | -1  | 1   | road-wheel angle target / full lock (positive: left)       |
    | 1   | throttle_brake | -1  | 1   | > 0: share of the drive force, < 0: share of the brakes    |

    Finite values outside [-1, 1] are clipped. A NaN or infinite action raises
    ``ValueError("actions must be finite ...")`` and leaves the env state unchanged; an
    action of another shape raises ``ValueError``.
    The steering actuator is rate limited (``max_steer_rate_radps`` of the vehicle).

    ## Observation Space

    ``Box(-inf, inf, (14 + 6 K,), float32)`` with ``K = course_points`` (default 20: 134
    elements). Each element is the raw quantity divided by the scale (see
    :mod:`envs.observation`; ``observation_spec()`` lists every element by name):

    | Index          | Observation          | Unit  | Scale         |
    |----------------|----------------------|-------|---------------|
    | 0              | body velocity vx     | m/s   | 50            |
    | 1              | body velocity vy     | m/s   | 10            |
    | 2              | yaw rate             | rad/s | 1             |
    | 3              | body acceleration ax | m/s^2 | 10            |
    | 4              | body acceleration ay | m/s^2 | 10            |
    | 5              | front slip angle     | rad   | 0.2           |
    | 6              | rear slip angle      | rad   | 0.2           |
    | 7              | front axle load      | N     | weight m g    |
    | 8              | rear axle load       | N     | weight m g    |
    | 9              | road-wheel angle     | rad   | max_steer_rad |
    | 10             | previous steer       | -     | 1             |
    | 11             | previous throttle    | -     | 1             |
    | 12             | off track (0/1)      | -     | 1             |
    | 13             | wall contact (0/1)   | -     | 1             |
    | 14 .. 13+2K    | left edge points x,y | m     | x 100, y 10   |
    | 14+2K .. 13+4K | centreline points    | m     | x 100, y 10   |
    | 14+4K .. 13+6K | right edge points    | m     | x 100, y 10   |

    Course points are pairs ``(x, y)`` in the car frame (x forward, y left) at arc lengths
    ``s + k L / K``, ``k = 0..K-1``, with look-ahead ``L = max(min_lookahead_m, speed *
    lookahead_time_s)`` (default ``max(30 m, 6 s x speed)``).

    ## Rewards

    The sum of the weighted terms of :mod:`envs.rewards` (GT Sophy's weights by default),
    each reported in ``info["reward_terms"]`` (they add up exactly to the reward):

    * ``progress``: +1 per metre of signed course progress (0 while off the track; driving
      backwards is negative);
    * ``off_course``: -0.01 x speed^2 [(m/s)^2] per control step ending off the track;
    * ``wall``: -0.01 x integral of speed^2 over the wall-contact time [m^2/s];
    * ``tyre_slip``: -0.25 x slip angle beyond each axle's peak [rad], summed front and rear.

    ## Starting State

    ``start="random"`` (default): on the centreline at an arc length drawn uniformly from
    the env's RNG, aligned with the track, rolling at a speed drawn uniformly between 0
    and a safe speed for the corners ahead (:func:`envs.core.safe_start_speed`); lap timing
    starts at the first crossing of the start/finish line (flying laps).
    ``start="grid"``: standing start 8 m behind the line (pole position); the first lap is
    timed from the start. ``reset(options=...)`` may override ``start`` and set ``s`` [m],
    ``d`` [m], ``speed`` [m/s] and ``heading_offset`` [rad]; other keys raise ValueError.
    With ``track="random"`` every reset first draws a new procedural circuit
    ``random:SEED`` with ``SEED`` from the env's RNG.

    ## Episode End

    * Termination (a true end: no future reward follows): the requested number of ``laps``
      is completed (``info["finished"]``), or the car is stuck: it gained less than 1 m of
      race distance in ``stuck_time_s`` (default 10 s; crashed out, stopped, or driving
      the wrong way; ``info["stuck"]``).
    * Truncation (the learner should bootstrap): ``max_episode_steps`` control steps
      (``gymnasium.make`` adds a ``TimeLimit`` of 3000 steps = 300 s by default; a directly
      constructed ``TimeTrialEnv`` has no time limit).

    ## Arguments

    ```python
    gymnasium.make("racing/TimeTrial-v0", track="club", vehicle="gt3", laps=None,
                   start="random", course_points=20, lookahead_time_s=6.0,
                   min_lookahead_m=30.0, reward_weights=None, stuck_time_s=10.0,
                   sim_config=None, render_mode=None, max_episode_steps=3000)
    ```

    * ``track``: built-in name (``oval``, ``club``, ``technical``, ``flowing``),
      ``random:SEED``, a CSV path, a :class:`racing.track.Track`, or ``"random"`` (a new
      procedural circuit each reset).
    * ``vehicle``: preset (``gt3``, ``road``), YAML path or :class:`VehicleParams`.
    * ``laps``: terminate after this many timed laps (None: never).
    * ``start``: ``"random"`` or ``"grid"`` (see Starting State).
    * ``course_points``, ``lookahead_time_s``, ``min_lookahead_m``: observation settings.
    * ``reward_weights``: :class:`envs.rewards.RewardWeights` or a mapping of term ->
      weight (unknown keys raise :class:`racing.errors.ConfigError`).
    * ``stuck_time_s``: see Episode End.
    * ``sim_config``: :class:`racing.sim.SimConfig` or mapping (``control_hz`` etc.).
    * ``render_mode``: None (default, nothing drawn), ``"rgb_array"`` (``render()``
      returns an (640, 640, 3) uint8 top-down frame), ``"human"`` (a pygame window,
      updated every step).

    Bad arguments raise :class:`racing.errors.TrackError` (track) or
    :class:`racing.errors.ConfigError` (anything else) naming the argument.

    ``info`` (reset and step): ``lap`` (timed laps completed), ``lap_valid`` (the current
    lap is still valid), ``lap_time_s`` (current lap so far; None before timing starts),
    ``last_lap_s``, ``best_lap_s`` (valid laps; None until there is one), ``speed_mps``,
    ``s_m`` (arc length), ``progress_m`` (race distance gained since the reset),
    ``off_track``, ``wall_contact``, ``stuck``, ``finished``; step only: ``reward_terms``
    (term -> weighted value); when a lap completes: ``lap_record`` (``lap``, ``time_s``,
    ``valid``, ``sectors_s``).

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}

    def __init__(self, track="club", vehicle="gt3", *, laps=None, start: str = "random", course_points: int = 20,
                 lookahead_time_s: float = 6.0, min_lookahead_m: float = 30.0, reward_weights=None,
                 stuck_time_s: float = 10.0, sim_config=None, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            from racing.errors import ConfigError

            raise ConfigError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.core = RaceCore(1, 1, track, vehicle, laps=laps, start=start,
                             obs_config=_obs_config(course_points, lookahead_time_s, min_lookahead_m),
                             reward_weights=reward_weights, num_reward_terms=len(SOLO_TERMS),
                             stuck_time_s=stuck_time_s, sim_config=sim_config)
        self.metadata = dict(self.metadata, render_fps=self.core.sim.config.control_hz)
        dim = self.core.obs_config.dim
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.reward_term_names = SOLO_TERMS
        self._renderer = None

    # ------------------------------------------------------------ API
    @property
    def sim(self):
        """The underlying :class:`racing.sim.RaceSim` (one race, one car)."""
        return self.core.sim

    def observation_spec(self) -> list[dict]:
        """Name, unit, scale and description of every observation element."""
        return observation_spec(self.core.obs_config)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.reset_races([0], [self.np_random], options)
        obs = self.core.observe()[0].copy()
        info = self._info(stuck=False, finished=False)
        if self.render_mode == "human":
            self.render()
        return obs, info

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,):
            raise ValueError(f"action must have shape (2,) ([steer, throttle_brake]), got {a.shape}")
        res = self.core.step(a.reshape(1, 2))
        obs = self.core.observe()[0].copy()
        info = self._info(stuck=bool(res.stuck[0]), finished=bool(res.finished[0]))
        # zip stops after the reported terms (the first len(SOLO_TERMS) columns)
        info["reward_terms"] = dict(zip(SOLO_TERMS, res.terms[0].tolist()))
        if res.lap_done[0]:
            info["lap_record"] = self.core.lap_record(0)
        if self.render_mode == "human":
            self.render()
        return obs, float(res.rewards[0]), bool(res.terminated[0]), False, info

    def _info(self, stuck: bool, finished: bool) -> dict:
        info = self.core.car_info(0)
        info["stuck"] = stuck
        info["finished"] = finished
        return info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'human'")
            return None
        from racing.render import EnvRenderer, hud_from_sim

        sim = self.core.sim
        hud = hud_from_sim(sim, race=0, focus_car=0)
        if self.core.laps is not None:
            hud["num_laps"] = self.core.laps
        hud.pop("position", None)
        hud.pop("num_cars", None)
        if self._renderer is None:
            self._renderer = EnvRenderer(self.render_mode)
        return self._renderer(sim, race=0, focus_car=0, hud=hud)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()


__all__ = ["TimeTrialEnv", "DEFAULT_MAX_EPISODE_STEPS", "RESET_OPTION_KEYS", "START_MODES"]

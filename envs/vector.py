"""A batched vector env of ``racing/TimeTrial-v0``: ``num_envs`` independent time trials
stepped by ONE :class:`racing.sim.RaceSim` call (one race of one car per sub-env), with
observations and rewards computed for all cars at once.

``gymnasium.make_vec("racing/TimeTrial-v0", num_envs=N)`` returns it (the registered
``vector_entry_point``), not ``N`` Python env copies.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.core import RaceCore
from envs.observation import observation_spec
from envs.rewards import SOLO_TERMS
from envs.time_trial import DEFAULT_MAX_EPISODE_STEPS, _obs_config
from racing.errors import ConfigError


class TimeTrialVectorEnv(VectorEnv):
    """``num_envs`` time trials in one simulator batch (Gymnasium 1.x ``VectorEnv``).

    Sub-env ``i`` behaves exactly like ``TimeTrialEnv`` (the same :class:`envs.core.RaceCore`
    logic, see its docstring for spaces, rewards and episode ends) with its own numpy
    Generator: ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i`` (like
    ``SyncVectorEnv``), so sub-env ``i`` reproduces ``gymnasium.make("racing/TimeTrial-v0")``
    reset with ``seed=s + i``, step for step, bit for bit.

    Args:
        num_envs: number of sub-envs (races), >= 1.
        max_episode_steps: truncation after this many steps of a sub-env (None: never).
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (default, Gymnasium's default: the step
            after an episode ends resets that sub-env, ignores its action and returns the
            first observation with reward 0) or ``AutoresetMode.SAME_STEP`` (the step that
            ends an episode already returns the next episode's first observation; the last
            one is in ``info["final_obs"]`` and its info in ``info["final_info"]``, masked
            by ``info["_final_obs"]``). Strings ``"NextStep"``/``"SameStep"`` work too.
        render_mode: None or ``"rgb_array"`` (``render()`` returns a tuple with one frame
            per sub-env).
        everything else: as ``TimeTrialEnv`` (track, vehicle, laps, start, course_points,
        lookahead_time_s, min_lookahead_m, reward_weights, stuck_time_s, sim_config).

    ``reset(options=...)`` takes the ``TimeTrialEnv`` keys (scalars, or arrays with one
    value per reset sub-env) plus ``reset_mask`` (bool array ``(num_envs,)``: reset only
    those sub-envs; the others keep running). Infos are dicts of arrays (one entry per
    sub-env; ``reward_terms`` is a dict of arrays; ``lap_record`` holds ``lap``, ``time_s``
    and ``valid`` arrays, meaningful where ``info["_lap_record"]`` is True). With
    ``SAME_STEP``, for a sub-env that ended and reset in this step the state keys (``lap``,
    ``s_m``, ``progress_m``, ``stuck`` ...) describe the new episode while
    ``reward_terms`` and ``lap_record`` belong to the step that ended the old one (like
    the reward); the old episode's full last info is ``info["final_info"][i]``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, track="club", vehicle="gt3", *, max_episode_steps=DEFAULT_MAX_EPISODE_STEPS,
                 autoreset_mode=AutoresetMode.NEXT_STEP, laps=None, start: str = "random", course_points: int = 20,
                 lookahead_time_s: float = 6.0, min_lookahead_m: float = 30.0, reward_weights=None,
                 stuck_time_s: float = 10.0, sim_config=None, render_mode: str | None = None):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"num_envs must be a positive integer, got {num_envs!r}")
        if max_episode_steps is not None and (isinstance(max_episode_steps, bool)
                                              or not isinstance(max_episode_steps, (int, np.integer))
                                              or max_episode_steps < 1):
            raise ConfigError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
        try:
            mode = autoreset_mode if isinstance(autoreset_mode, AutoresetMode) else AutoresetMode(autoreset_mode)
        except ValueError:
            mode = None
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ConfigError(f"autoreset_mode must be AutoresetMode.NEXT_STEP or SAME_STEP, got {autoreset_mode!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode must be None or 'rgb_array' for the vector env, got {render_mode!r}")
        self.num_envs = int(num_envs)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.autoreset_mode = mode
        self.render_mode = render_mode
        self.core = RaceCore(self.num_envs, 1, track, vehicle, laps=laps, start=start,
                             obs_config=_obs_config(course_points, lookahead_time_s, min_lookahead_m),
                             reward_weights=reward_weights, num_reward_terms=len(SOLO_TERMS),
                             stuck_time_s=stuck_time_s, sim_config=sim_config)
        self.metadata = dict(self.metadata, autoreset_mode=mode, render_fps=self.core.sim.config.control_hz)
        dim = self.core.obs_config.dim
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.single_action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.reward_term_names = SOLO_TERMS
        self._me = None  # learner car of each sub-env (None: every car, one per race)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._needs_reset = True
        self._renderers: dict = {}

    @property
    def sim(self):
        """The underlying :class:`racing.sim.RaceSim` (``num_envs`` races of one car)."""
        return self.core.sim

    @property
    def env_rngs(self) -> list:
        """The numpy Generator of each sub-env (None before its first reset)."""
        return list(self._rngs)

    def observation_spec(self) -> list[dict]:
        return observation_spec(self.core.obs_config)

    # ------------------------------------------------------------ reset
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed if isinstance(seed, (int, np.integer)) else None)
        n = self.num_envs
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"seed must be None, an int, or a list of num_envs={n} seeds; got {len(seeds)} seeds")
        opts = dict(options or {})
        mask = opts.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(n, dtype=bool)
        else:
            mask = np.asarray(mask)
            if mask.shape != (n,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}")
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one sub-env")
        idx = np.flatnonzero(mask)
        for i in idx:
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        self._reset_races(idx, opts)
        self._steps[idx] = 0
        self._autoreset[idx] = False
        self._needs_reset = False
        obs = self._observe().copy()
        info = self._infos(np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
        return obs, info

    # ------------------------------------------------------------ step
    def step(self, actions):
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        a = np.asarray(actions, dtype=np.float64)
        if a.shape != (n, 2):
            raise ValueError(f"actions must have shape ({n}, 2) ([steer, throttle_brake] per sub-env), got {a.shape}")
        core = self.core
        res = core.step(self._core_controls(a))
        self._steps += 1
        me = self._me if self._me is not None else slice(None)
        terminated = res.terminated[me].copy()
        truncated = (self._steps >= self.max_episode_steps) if self.max_episode_steps is not None \
            else np.zeros(n, dtype=bool)
        terms, rewards = self._learner_terms(res)
        lap_done = res.lap_done[me].copy()
        stuck = res.stuck[me].copy()
        finished = res.finished[me].copy()

        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            idx = np.flatnonzero(self._autoreset)
            if idx.size:
                # these sub-envs ended last step: their step is discarded and replaced by a reset
                self._reset_races(idx)
                self._steps[idx] = 0
                rewards[idx] = 0.0
                terminated[idx] = False
                truncated[idx] = False
                lap_done[idx] = False
                stuck[idx] = False
                finished[idx] = False
                terms = terms.copy()
                terms[idx] = 0.0
            obs = self._observe().copy()
            info = self._infos(stuck, finished, terms, lap_done)
            self._autoreset = terminated | truncated
        else:  # SAME_STEP
            obs = self._observe().copy()
            info = self._infos(stuck, finished, terms, lap_done)
            done = np.flatnonzero(terminated | truncated)
            if done.size:
                final_obs = np.full(n, None, dtype=object)
                final_info = np.full(n, None, dtype=object)
                for i in done:
                    final_obs[i] = obs[i].copy()
                    final_info[i] = _row(info, i)
                self._reset_races(done)
                self._steps[done] = 0
                obs[done] = self._observe()[done]
                fresh = self._infos(np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
                for k, v in fresh.items():
                    info[k][done] = v[done]
                mask = np.zeros(n, dtype=bool)
                mask[done] = True
                info["final_obs"] = final_obs
                info["_final_obs"] = mask
                info["final_info"] = final_info
                info["_final_info"] = mask.copy()
        return obs, rewards, terminated, truncated, info

    # ------------------------------------------------------------ hooks (Race-v0 overrides)
    def _core_controls(self, actions: np.ndarray) -> np.ndarray:
        """Controls of every car of the simulator from the sub-envs' actions."""
        return actions

    def _learner_terms(self, res):
        """``(terms, rewards)`` of the sub-envs' cars: weighted terms in
        :attr:`reward_term_names` order and their sums."""
        return res.terms, res.rewards.copy()

    def _observe(self) -> np.ndarray:
        """Observations of the sub-envs' cars (an internal buffer: copy to keep)."""
        return self.core.observe()

    def _reset_races(self, idx, options=None) -> None:
        self.core.reset_races(idx, [self._rngs[i] for i in idx], options)

    def _infos(self, stuck, finished, terms=None, lap_done=None) -> dict:
        info = self.core.info_arrays()
        if self._me is not None:
            info = {k: v[self._me] for k, v in info.items()}
        info["stuck"] = np.asarray(stuck, dtype=bool)
        info["finished"] = np.asarray(finished, dtype=bool)
        if terms is not None:
            info["reward_terms"] = {name: terms[:, k].copy() for k, name in enumerate(self.reward_term_names)}
        if lap_done is not None and lap_done.any():
            lap = np.zeros(self.num_envs, dtype=np.int64)
            time_s = np.full(self.num_envs, np.nan)
            valid = np.zeros(self.num_envs, dtype=bool)
            for i in np.flatnonzero(lap_done):
                rec = self.core.sim.laps[i if self._me is None else int(self._me[i])][-1]
                lap[i], time_s[i], valid[i] = rec.lap, rec.time_s, rec.valid
            info["lap_record"] = {"lap": lap, "time_s": time_s, "valid": valid}
            info["_lap_record"] = np.asarray(lap_done, dtype=bool).copy()
        return info

    # ------------------------------------------------------------ render / close
    def render(self):
        if self.render_mode is None:
            return None
        from racing.render import TopDownRenderer, hud_from_sim

        sim = self.core.sim
        frames = []
        used = set()
        for b in range(self.num_envs):
            track = sim.track_of(b)
            key = id(track)
            used.add(key)
            r = self._renderers.get(key)
            if r is None or r.track is not track:
                r = self._renderers[key] = TopDownRenderer(track, width=640, height=640)
            hud = hud_from_sim(sim, race=b, focus_car=0)
            hud.pop("position", None)
            hud.pop("num_cars", None)
            frames.append(r.draw(sim, race=b, focus_car=0, hud=hud))
        for key in list(self._renderers):
            if key not in used:
                self._renderers.pop(key).close()
        return tuple(frames)

    def close_extras(self, **kwargs):
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()


def _row(info: dict, i: int) -> dict:
    """Sub-env ``i``'s entries of a vector info dict (masked keys only where set)."""
    out = {}
    for k, v in info.items():
        if k.startswith("_"):
            continue
        mask = info.get("_" + k)
        if mask is not None and not mask[i]:
            continue
        out[k] = _row(v, i) if isinstance(v, dict) else (v[i].item() if hasattr(v[i], "item") else v[i])
    return out

"""Rollout workers: batches of races stepped with a CPU copy of the actor.

A :class:`RolloutWorker` owns one batched vector env per (scenario, track) pair of the
config's mixes -- every env is ONE :class:`racing.sim.RaceSim` of many races, stepped in one
kernel call -- and a CPU copy of the actor (:class:`agents.policy.ActorRunner`). Each
learner car is one *column*; :meth:`RolloutWorker.rollout` steps all columns until each has
``rollout_steps`` new transitions and returns them as one :class:`TransitionBatch` of shape
``(T, E)``, tagged with the weights version that chose every action.

The same class runs in the learner's process (``--workers 0``) or as a Ray actor
(``ray.remote(RolloutWorker)``, see :mod:`agents.train`); it knows nothing of Ray.

Rules the batches follow (from Stable-Baselines3's replay buffer, see REFERENCES.md):

* actions are stored in the policy's [-1, 1] space (the envs' action space is [-1, 1] too,
  checked at construction, so no rescaling happens anywhere);
* ``terminated`` is a true end (laps done, stuck); ``truncated`` a time limit, after which
  the learner bootstraps; ``next_obs`` is always the true next observation of the same
  episode (the final observation at an episode end, whichever autoreset mode the env uses);
* with ``AutoresetMode.NEXT_STEP`` the step after an episode end only resets that env: it
  is no transition and is dropped, so a column can lag; transitions are staged per column
  and a batch is emitted once every column has ``T`` of them, the rest carried over.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from racing.errors import ConfigError

#: Environment ids of the scenario kinds.
ENV_IDS = {"time_trial": "racing/TimeTrial-v0", "race": "racing/Race-v0"}
#: Seeds of different workers (and of a worker's restarts) are this far apart.
WORKER_SEED_STRIDE = 100_003


class EpisodeStats(NamedTuple):
    """One finished episode of one learner car."""

    scenario: str  # label "kind/track"
    episode_return: float  # sum of rewards
    length: int  # control steps
    terms: dict  # reward term -> sum over the episode
    laps: int  # timed laps completed
    best_lap_s: float  # best valid lap [s]; NaN if none
    terminated: bool  # True: a true end; False: truncated by the time limit


class LapStats(NamedTuple):
    """One lap completed by a learner car during a rollout."""

    scenario: str
    time_s: float
    valid: bool


class TransitionBatch(NamedTuple):
    """``T`` consecutive transitions of each of ``E`` learner cars (columns).

    Column ``j`` of every array is one car; row ``t + 1`` follows row ``t`` in that car's
    life unless row ``t`` ended an episode (``terminated`` or ``truncated``).
    """

    obs: np.ndarray  # (T, E, D) float32 observation before the action
    next_obs: np.ndarray  # (T, E, D) float32 true next observation (final one at episode ends)
    actions: np.ndarray  # (T, E, 2) float32 in [-1, 1] ([steer, throttle_brake], the policy's space)
    rewards: np.ndarray  # (T, E) float32
    terminated: np.ndarray  # (T, E) bool: true end (no bootstrap)
    truncated: np.ndarray  # (T, E) bool: time limit (bootstrap)
    policy_version: np.ndarray  # (T, E) int64: weights version that chose the action
    worker: int  # index of the worker that produced it
    episodes: tuple  # EpisodeStats of the episodes that ended in this batch
    laps: tuple  # LapStats of the laps completed in this batch

    @property
    def env_steps(self) -> int:
        """Environment steps in the batch, summed over cars (T x E)."""
        return int(self.rewards.size)


class Segment:
    """One vector env of a worker and the columns it fills."""

    def __init__(self, env, start: int, label: str, term_names: tuple):
        from gymnasium.vector import AutoresetMode

        self.env = env
        self.n = env.num_envs
        self.cols = slice(start, start + self.n)
        self.label = label
        self.term_names = term_names
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ConfigError(f"{label}: the env's autoreset mode {mode} is not supported (NEXT_STEP or SAME_STEP)")
        self.same_step = mode == AutoresetMode.SAME_STEP
        self.pending_reset = np.zeros(self.n, dtype=bool)  # NEXT_STEP: this env's next step is a reset


def allocate(total: int, weights, offset: int = 0) -> list[int]:
    """Split ``total`` items by ``weights`` (largest remainder; ties broken from
    ``offset`` so different workers give leftover items to different entries)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    rem = exact - counts
    order = sorted(range(len(w)), key=lambda i: (-round(rem[i], 9), (i - offset) % len(w)))
    for i in order[: total - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def scenario_env_kwargs(cfg, scenario, track: str, n: int, seed: int = 0) -> tuple[str, dict]:
    """The env id and ``gymnasium.make_vec`` keyword arguments of one segment (``seed``
    seeds the scripted opponents of race scenarios)."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    from racing.sim import SimConfig

    env_id = ENV_IDS[scenario.kind]
    if env_id not in gym.registry:
        raise ConfigError(f"scenario kind '{scenario.kind}' is not available yet: the environment {env_id} is not "
                          f"registered; use kind: time_trial")
    obs = cfg.obs_config
    kwargs = dict(num_envs=n, track=track, vehicle=cfg.vehicle, start=scenario.start, laps=scenario.laps,
                  max_episode_steps=max(1, int(round(scenario.episode_s * SimConfig().control_hz))),
                  autoreset_mode=AutoresetMode.SAME_STEP, reward_weights=dict(cfg.rewards),
                  course_points=obs.course_points, lookahead_time_s=obs.lookahead_time_s,
                  min_lookahead_m=obs.min_lookahead_m)
    if scenario.kind == "race":
        kwargs.update(opponents=scenario.opponents, opponent_skill=scenario.opponent_skill,
                      obs_opponents=obs.num_opponents, opponent_seed=int(seed))
    return env_id, kwargs


def build_segments(cfg, worker_index: int, seed: int = 0) -> list[Segment]:
    """One vector env per (scenario, track) with races split by the weights of both mixes."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the environments)

    segments: list[Segment] = []
    start = 0
    per_scenario = cfg.races_per_scenario()
    tweights = [t.weight for t in cfg.tracks]
    for scen, n_races in zip(cfg.scenarios, per_scenario):
        for tc, n in zip(cfg.tracks, allocate(n_races, tweights, offset=worker_index)):
            if n == 0:
                continue
            env_id, kwargs = scenario_env_kwargs(cfg, scen, tc.track, n, seed=seed + len(segments))
            env = gym.make_vec(env_id, **kwargs)
            label = f"{scen.kind}/{tc.track}"
            # the observations must be the ones the driver will build from the config
            core_obs = getattr(getattr(env, "core", None), "obs_config", None)
            if core_obs is not None and core_obs.num_opponents > 0 and core_obs != cfg.obs_config:
                raise ConfigError(f"{label}: {env_id} builds observations with {core_obs}, the config's "
                                  f"observation section gives {cfg.obs_config}; make them agree")
            act = env.single_action_space
            if not (np.allclose(act.low, -1.0) and np.allclose(act.high, 1.0) and act.shape == (2,)):
                raise ConfigError(f"{env_id}: the action space must be Box(-1, 1, (2,)), got {act}")
            names = tuple(getattr(env, "reward_term_names", ()))
            segments.append(Segment(env, start, label, names))
            start += n
    return segments


class RolloutWorker:
    """A batch of races and a CPU actor; returns :class:`TransitionBatch` es.

    Args:
        config: the training config as plain data (:func:`agents.config.to_dict`), so it
            crosses process boundaries cheaply.
        worker_index: 0-based; seeds are ``seed + worker_index * WORKER_SEED_STRIDE``.
        seed: base seed of this worker (the learner adds the index and restart count).
    """

    def __init__(self, config: dict, worker_index: int, seed: int):
        from agents.config import TrainConfig, from_dict
        from agents.policy import ActorRunner, set_torch_threads

        cfg = from_dict(TrainConfig, config)
        self.cfg = cfg
        self.index = int(worker_index)
        self.seed = int(seed)
        set_torch_threads(1)
        import torch

        torch.manual_seed(self.seed)
        if cfg.workers.count > 0:  # a process of its own: as many numba threads as configured
            import numba

            numba.set_num_threads(min(cfg.workers.sim_threads, numba.config.NUMBA_NUM_THREADS))
        self.segments = build_segments(cfg, self.index, self.seed)
        self.E = sum(s.n for s in self.segments)
        self.D = cfg.obs_config.dim
        self.T = cfg.workers.rollout_steps
        al = cfg.algorithm
        self.runner = ActorRunner(al.name, self.D, al.net_arch, al.activation)
        self.term_names = tuple(dict.fromkeys(n for s in self.segments for n in s.term_names))
        # current observation of every column
        self.obs = np.zeros((self.E, self.D), dtype=np.float32)
        for k, seg in enumerate(self.segments):
            o, _ = seg.env.reset(seed=self.seed + 1000 * k)
            self._put_obs(self.obs, seg, o)
        # staging: per column, transitions not yet emitted
        self._cap = 2 * self.T
        self._alloc_staging(self._cap)
        self._count = np.zeros(self.E, dtype=np.int64)
        # per-column episode accumulators
        self._ep_return = np.zeros(self.E)
        self._ep_len = np.zeros(self.E, dtype=np.int64)
        self._ep_terms = {n: np.zeros(self.E) for n in self.term_names}
        self._ep_laps = np.zeros(self.E, dtype=np.int64)
        self._ep_best = np.full(self.E, np.nan)
        self._episodes: list[EpisodeStats] = []
        self._laps: list[LapStats] = []
        self._label = np.empty(self.E, dtype=object)
        for seg in self.segments:
            self._label[seg.cols] = seg.label

    # ------------------------------------------------------------ small helpers
    def pid(self) -> int:
        """The process id (tests kill workers with it)."""
        return os.getpid()

    def describe(self) -> dict:
        return {"worker": self.index, "cars": self.E, "obs_dim": self.D,
                "segments": [(s.label, s.n, "same_step" if s.same_step else "next_step") for s in self.segments]}

    def _put_obs(self, dest: np.ndarray, seg: Segment, o: np.ndarray) -> None:
        """Copy a segment's observations into its columns, zero-padding missing opponent
        slots (an empty opponent slot is all zeros, so a time trial padded to a racing
        policy's width is exactly what the builder gives with no cars around)."""
        o = np.asarray(o, dtype=np.float32)
        w = o.shape[1]
        if w > self.D:
            raise ConfigError(f"{seg.label}: the env gives {w} observation elements, more than the config's "
                              f"{self.D}; set observation.num_opponents to match")
        dest[seg.cols, :w] = o
        if w < self.D:
            dest[seg.cols, w:] = 0.0

    def _alloc_staging(self, cap: int) -> None:
        E, D = self.E, self.D
        old = getattr(self, "_s_obs", None)
        new = dict(
            _s_obs=np.zeros((cap, E, D), np.float32), _s_next=np.zeros((cap, E, D), np.float32),
            _s_act=np.zeros((cap, E, 2), np.float32), _s_rew=np.zeros((cap, E), np.float32),
            _s_term=np.zeros((cap, E), bool), _s_trunc=np.zeros((cap, E), bool),
            _s_ver=np.zeros((cap, E), np.int64),
        )
        if old is not None:
            n = old.shape[0]
            for k, arr in new.items():
                arr[:n] = getattr(self, k)
        for k, arr in new.items():
            setattr(self, k, arr)
        self._cap = cap

    def set_weights(self, weights) -> int:
        """Load ``(version, state_dict)`` unless that version is loaded already."""
        version, state = weights
        if int(version) != self.runner.version:
            self.runner.load(state, version)
        return self.runner.version

    # ------------------------------------------------------------ rollout
    def rollout(self, weights=None) -> TransitionBatch:
        """Step every column until each has ``T`` transitions; return them (weights: an
        optional ``(version, state_dict)`` to load first)."""
        if weights is not None:
            self.set_weights(weights)
        if self.runner.version < 0:
            raise RuntimeError("rollout() before any weights were loaded")
        while self._count.min() < self.T:
            self._step()
        return self._emit()

    def _step(self) -> None:
        actions = self.runner.act(self.obs, deterministic=False)
        next_obs = np.empty_like(self.obs)
        valid = np.ones(self.E, dtype=bool)
        final_next = np.empty_like(self.obs)
        rewards = np.zeros(self.E, dtype=np.float32)
        term = np.zeros(self.E, dtype=bool)
        trunc = np.zeros(self.E, dtype=bool)
        for seg in self.segments:
            cols = seg.cols
            o, r, te, tr, info = seg.env.step(actions[cols])
            self._put_obs(next_obs, seg, o)
            final_next[cols] = next_obs[cols]
            rewards[cols] = r
            term[cols] = te
            trunc[cols] = tr
            done = np.asarray(te) | np.asarray(tr)
            if seg.same_step:
                if done.any():
                    # the returned observation already starts the next episode
                    mask = np.asarray(info["_final_obs"], dtype=bool)
                    fo = np.zeros((seg.n, self.D), dtype=np.float32)
                    for i in np.flatnonzero(mask):
                        w = len(info["final_obs"][i])
                        fo[i, :w] = info["final_obs"][i]
                    idx = np.flatnonzero(mask) + cols.start
                    final_next[idx] = fo[mask]
            else:
                # NEXT_STEP: an env whose previous step ended ignored its action and reset
                reset_now = seg.pending_reset.copy()
                valid[cols] = ~reset_now
                seg.pending_reset = done & ~reset_now
            self._record_stats(seg, info, np.asarray(r), np.asarray(te, dtype=bool), valid[cols], done)
        # stage the valid transitions of every column
        cols = np.flatnonzero(valid)
        if cols.size:
            rows = self._count[cols]
            if rows.max() >= self._cap:
                self._alloc_staging(2 * self._cap)
            self._s_obs[rows, cols] = self.obs[cols]
            self._s_next[rows, cols] = final_next[cols]
            self._s_act[rows, cols] = actions[cols]
            self._s_rew[rows, cols] = rewards[cols]
            self._s_term[rows, cols] = term[cols]
            self._s_trunc[rows, cols] = trunc[cols] & ~term[cols]
            self._s_ver[rows, cols] = self.runner.version
            self._count[cols] += 1
        self.obs = next_obs

    def _record_stats(self, seg: Segment, info: dict, r: np.ndarray, term: np.ndarray, valid: np.ndarray,
                      done: np.ndarray) -> None:
        cols = np.arange(seg.cols.start, seg.cols.stop)
        v = cols[valid]
        self._ep_return[v] += r[valid]
        self._ep_len[v] += 1
        terms = info.get("reward_terms", {})
        for name in seg.term_names:
            if name in terms:
                self._ep_terms[name][v] += np.asarray(terms[name])[valid]
        lap_mask = np.asarray(info.get("_lap_record", np.zeros(seg.n, dtype=bool)), dtype=bool) & valid
        if lap_mask.any():
            rec = info["lap_record"]
            for i in np.flatnonzero(lap_mask):
                c = cols[i]
                t = float(rec["time_s"][i])
                ok = bool(rec["valid"][i])
                self._laps.append(LapStats(seg.label, t, ok))
                self._ep_laps[c] += 1
                if ok and not (t >= self._ep_best[c]):
                    self._ep_best[c] = t
        ended = done & valid
        for i in np.flatnonzero(ended):
            c = cols[i]
            self._episodes.append(EpisodeStats(
                seg.label, float(self._ep_return[c]), int(self._ep_len[c]),
                {n: float(self._ep_terms[n][c]) for n in seg.term_names}, int(self._ep_laps[c]),
                float(self._ep_best[c]), bool(term[i])))
            self._ep_return[c] = 0.0
            self._ep_len[c] = 0
            for n in self.term_names:
                self._ep_terms[n][c] = 0.0
            self._ep_laps[c] = 0
            self._ep_best[c] = math.nan

    def _emit(self) -> TransitionBatch:
        T = self.T
        batch = TransitionBatch(
            obs=self._s_obs[:T].copy(), next_obs=self._s_next[:T].copy(), actions=self._s_act[:T].copy(),
            rewards=self._s_rew[:T].copy(), terminated=self._s_term[:T].copy(), truncated=self._s_trunc[:T].copy(),
            policy_version=self._s_ver[:T].copy(), worker=self.index, episodes=tuple(self._episodes),
            laps=tuple(self._laps))
        # carry the rest over (columns that ran ahead while others were resetting)
        rest = int(self._count.max()) - T
        if rest > 0:
            for name in ("_s_obs", "_s_next", "_s_act", "_s_rew", "_s_term", "_s_trunc", "_s_ver"):
                arr = getattr(self, name)
                arr[:rest] = arr[T:T + rest].copy()
        self._count -= T
        self._episodes = []
        self._laps = []
        return batch

    def close(self) -> None:
        for seg in self.segments:
            seg.env.close()

"""``racing train``: soft actor-critic drivers trained from asynchronous rollout workers.

Architecture (Ape-X style, as GT Sophy's distributed asynchronous rollouts and training,
Wurman et al. 2022):

* **Learner** (this process): a Stable-Baselines3 ``SAC`` or sb3-contrib ``TQC`` model
  (TQC's quantile critic is the public analogue of GT Sophy's QR-SAC) driven by our own
  loop: transitions go in with ``model.replay_buffer.extend(...)`` and it learns with
  ``model.train(gradient_steps, batch_size)``. The model is built without an env (only
  its spaces) and its logger is set by hand; SB3's ``learn()`` is never called.
* **Rollout workers** (:class:`agents.workers.RolloutWorker`): Ray actors, each stepping a
  batch of races with a CPU copy of the actor, returning typed
  :class:`agents.workers.TransitionBatch` es tagged with the weights version that produced
  them. The learner keeps one request in flight per worker, collects whichever finishes
  first (``ray.wait``), sends that worker its next request at once (so it steps while the
  learner trains), adds the batch to the replay buffer, trains at the configured
  update-to-data ratio and, every ``workers.sync_interval`` gradient steps, broadcasts
  versioned actor weights with one ``ray.put``. A worker that dies is re-created and
  training continues; ``workers/restarts`` counts it.
* ``--workers 0`` runs one worker in this process, without Ray (debugging, tests).

The replay buffer has one column per learner car of a worker batch (SB3's n-step buffer
walks along one column, so one car's transitions never mix with another's). Batches of
different workers interleave in the buffer, so the last row of every batch is marked
``TimeLimit.truncated`` (``done`` stays False): the n-step sum stops there and bootstraps
from that transition's true next observation. True ends are ``done`` without timeout;
time limits are ``done`` with ``TimeLimit.truncated`` (SB3's convention).

Outputs (the run directory): ``config.yaml`` (resolved), ``checkpoints/`` (the last K,
atomic, everything needed to resume), ``tb/`` (TensorBoard, steps = environment steps
summed over all cars), ``metrics.jsonl`` (the same scalars), ``eval/step_*.json``
(periodic evaluations with ``racing eval``'s code path), ``driver.pt`` (the latest actor:
``racing eval --driver RUN_DIR``) and ``summary.json``.

Scalars (every ``log_every_steps``; TensorBoard step = environment steps):
``losses/{actor_loss, critic_loss, ent_coef, ent_coef_loss}`` (means over the window),
``charts/{episode_return, episode_length, episodes, laps, valid_laps, lap_time_s,
weights_version}``, ``rewards/<term>`` (mean per-episode sum of every reward term),
``perf/env_steps_per_s``, ``perf/grad_steps_per_s``, ``perf/weights_lag`` (weight versions
between the actor that collected a batch and the learner when it arrived),
``perf/buffer_transitions``, ``workers/alive``, ``workers/restarts``; at evaluations
``eval/{lap_time_s, gap_to_reference_pct, completed_laps, collisions, at_fault_collisions,
off_track_s, position}`` (see :func:`eval_scalars`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from racing.errors import ConfigError, RacingError

CHECKPOINT_FORMAT_VERSION = 1
#: A worker that dies this many times in a row without delivering a batch is a bug, not bad luck.
MAX_CONSECUTIVE_RESTARTS = 5
#: Object store of the Ray instance ``racing train`` starts (the default is 30% of RAM);
#: it holds a few weight broadcasts and transition batches at a time.
OBJECT_STORE_BYTES = 200 * 1024 * 1024


# ====================================================================== learner
class Learner:
    """The SB3 model, its replay buffer and counters.

    Args:
        cfg: :class:`agents.config.TrainConfig`.
        n_envs: learner cars per worker batch (replay buffer columns).
        obs_dim: observation length.
    """

    def __init__(self, cfg, n_envs: int, obs_dim: int):
        from stable_baselines3.common.logger import Logger

        from agents.policy import activation_class, set_torch_threads, spaces_for

        set_torch_threads(1)
        self.cfg = cfg
        al = cfg.algorithm
        policy_kwargs = dict(net_arch=list(al.net_arch), activation_fn=activation_class(al.activation),
                             n_critics=al.n_critics)
        kwargs = dict(learning_rate=al.learning_rate, buffer_size=al.buffer_size, learning_starts=0,
                      batch_size=al.batch_size, tau=al.tau, gamma=al.gamma, n_steps=al.n_steps,
                      ent_coef=al.ent_coef,
                      # "auto" = -dim(action) (SB3's rule, which reads it from an env we do not pass)
                      target_entropy=-2.0 if al.target_entropy == "auto" else float(al.target_entropy),
                      policy_kwargs=policy_kwargs, seed=cfg.seed, device="cpu", _init_setup_model=False)
        if al.name == "tqc":
            from sb3_contrib import TQC as algo_cls

            policy_kwargs["n_quantiles"] = al.n_quantiles
            kwargs["top_quantiles_to_drop_per_net"] = al.top_quantiles_to_drop_per_net
        else:
            from stable_baselines3 import SAC as algo_cls
        model = algo_cls("MlpPolicy", None, **kwargs)
        model.observation_space, model.action_space = spaces_for(obs_dim)
        model.n_envs = int(n_envs)
        model._setup_model()
        # no output formats: train() records into it, and we read and re-key the values
        model.set_logger(Logger(folder=None, output_formats=[]))
        self.model = model
        self.n_envs = int(n_envs)
        self.obs_dim = int(obs_dim)
        self.env_steps = 0  # environment steps received (all cars, workers, races)
        self.weights_version = 0
        self.wall_time_s = 0.0  # training wall time over all sessions

    # ---- data
    def add_batch(self, batch) -> None:
        """Append a worker batch ``(T, E)`` to the replay buffer (row by row, columns = cars)."""
        T, E = batch.rewards.shape
        if E != self.n_envs or batch.obs.shape[2] != self.obs_dim:
            raise RuntimeError(f"batch of {E} cars x {batch.obs.shape[2]} inputs; the buffer has {self.n_envs} x "
                               f"{self.obs_dim}")
        dones = batch.terminated | batch.truncated
        timeouts = batch.truncated & ~batch.terminated
        # cut n-step chains at the batch boundary: the next rows of these columns come from
        # another worker's cars; bootstrap from the true next observation instead
        timeouts[-1] |= ~dones[-1]
        infos = [[{"TimeLimit.truncated": bool(x)} for x in row] for row in timeouts]
        self.model.replay_buffer.extend(batch.obs, batch.next_obs, batch.actions, batch.rewards,
                                        dones.astype(np.float32), infos)
        self.env_steps += batch.env_steps

    @property
    def buffer_transitions(self) -> int:
        rb = self.model.replay_buffer
        return int(rb.size() * rb.n_envs)

    # ---- training
    def train(self, gradient_steps: int) -> dict:
        """Run ``gradient_steps`` SAC/TQC updates; returns the mean losses re-keyed
        ``losses/...``."""
        if gradient_steps <= 0:
            return {}
        self.model.train(gradient_steps=int(gradient_steps), batch_size=self.cfg.algorithm.batch_size)
        values = dict(self.model.logger.name_to_value)
        self.model.logger.dump()  # no output formats: only clears the recorded values
        out = {}
        for key, value in values.items():
            name = key.split("/", 1)[-1]
            if name in ("actor_loss", "critic_loss", "ent_coef", "ent_coef_loss"):
                out[f"losses/{name}"] = float(value)
        return out

    @property
    def grad_steps(self) -> int:
        return int(self.model._n_updates)

    def actor_weights(self) -> dict:
        from agents.policy import actor_weights_numpy

        return actor_weights_numpy(self.model.actor)

    def driver_record(self) -> dict:
        """What :mod:`agents.policy` needs to drive (plain data + tensors)."""
        al = self.cfg.algorithm
        return {
            "format": "racing-driver",
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "algorithm": al.name,
            "net_arch": list(al.net_arch),
            "activation": al.activation,
            "obs_dim": self.obs_dim,
            "observation": dict(self.cfg.observation),
            "vehicle": self.cfg.vehicle,
            "actor": {k: v.detach().clone() for k, v in self.model.actor.state_dict().items()},
            "env_steps": self.env_steps,
            "version": self.weights_version,
        }

    # ---- checkpoints
    def state_dict(self, stats: dict, include_buffer: bool) -> dict:
        import torch

        from agents.config import to_dict

        m = self.model
        state = {
            "format": "racing-checkpoint",
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "config": to_dict(self.cfg),
            "env_steps": self.env_steps,
            "grad_steps": self.grad_steps,
            "weights_version": self.weights_version,
            "wall_time_s": self.wall_time_s,
            "n_envs": self.n_envs,
            "obs_dim": self.obs_dim,
            "policy": m.policy.state_dict(),
            "actor_optimizer": m.actor.optimizer.state_dict(),
            "critic_optimizer": m.critic.optimizer.state_dict(),
            "log_ent_coef": None if m.log_ent_coef is None else m.log_ent_coef.detach().clone(),
            "ent_coef_optimizer": None if m.ent_coef_optimizer is None else m.ent_coef_optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "stats": dict(stats),
            "driver": self.driver_record(),
            "replay_buffer": None,
        }
        if include_buffer:
            rb = m.replay_buffer
            n = rb.buffer_size if rb.full else rb.pos
            state["replay_buffer"] = {
                "pos": int(rb.pos), "full": bool(rb.full),
                **{k: torch.from_numpy(getattr(rb, k)[:n].copy())
                   for k in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")},
            }
        return state

    def load_state_dict(self, state: dict) -> None:
        import torch

        m = self.model
        if int(state["n_envs"]) != self.n_envs or int(state["obs_dim"]) != self.obs_dim:
            raise ConfigError(f"checkpoint shape ({state['n_envs']} cars x {state['obs_dim']} inputs) does not match "
                              f"the config ({self.n_envs} x {self.obs_dim})")
        m.policy.load_state_dict(state["policy"])
        m.actor.optimizer.load_state_dict(state["actor_optimizer"])
        m.critic.optimizer.load_state_dict(state["critic_optimizer"])
        if state["log_ent_coef"] is not None:
            with torch.no_grad():
                m.log_ent_coef.copy_(state["log_ent_coef"])  # in place: the optimiser holds this tensor
            m.ent_coef_optimizer.load_state_dict(state["ent_coef_optimizer"])
        m._n_updates = int(state["grad_steps"])
        torch.set_rng_state(state["torch_rng"])
        self.env_steps = int(state["env_steps"])
        self.weights_version = int(state["weights_version"])
        self.wall_time_s = float(state["wall_time_s"])
        buf = state.get("replay_buffer")
        if buf is not None:
            rb = m.replay_buffer
            for k in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
                arr = buf[k].numpy()
                if arr.shape[0] > rb.buffer_size or arr.shape[1:] != getattr(rb, k).shape[1:]:
                    raise ConfigError(f"stored replay buffer {k} {arr.shape} does not fit {getattr(rb, k).shape}")
                getattr(rb, k)[: arr.shape[0]] = arr
            rb.pos = int(buf["pos"])
            rb.full = bool(buf["full"])


# ====================================================================== worker pools
class LocalPool:
    """One :class:`RolloutWorker` in this process (``--workers 0``)."""

    def __init__(self, cfg_dict: dict, seed: int):
        from agents.workers import RolloutWorker

        self.worker = RolloutWorker(cfg_dict, 0, seed)
        self.weights = None
        self.alive = 1
        self.restarts = 0

    def broadcast(self, version: int, weights: dict) -> None:
        self.weights = (version, weights)

    def next_batch(self):
        return self.worker.rollout(self.weights)

    def close(self) -> None:
        self.worker.close()


def start_ray(address: str | None, num_workers: int) -> tuple[bool, str]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start Ray on this machine.

    Returns ``(started, where)``: ``started`` is True when this call initialised Ray (so
    the caller shuts it down), ``where`` says what it connected to.
    """
    import ray

    if ray.is_initialized():
        return False, "the Ray instance already running in this process"
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address:
            ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
        else:
            # "local": always a new instance, even when a `ray start` cluster runs on this machine
            ray.init(address="local", num_cpus=max(int(num_workers), os.cpu_count() or 1),
                     object_store_memory=OBJECT_STORE_BYTES,
                     include_dashboard=False, logging_level="WARNING", log_to_driver=True)
    except Exception as exc:  # ConnectionError, RuntimeError, AuthenticationError, ValueError ...
        if not address:
            raise ConfigError(f"could not start Ray on this machine: {exc}") from None
        hint = ""
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            hint = (" (if the cluster uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN or "
                    "~/.ray/auth_token as on the head node)")
        raise ConfigError(f"could not join the Ray cluster at {address}: {exc}{hint}") from None
    resources = ray.cluster_resources()
    what = f"the Ray cluster at {address}" if address else "a local Ray instance"
    return True, f"{what} ({resources.get('CPU', 0):g} CPUs, {len(ray.nodes())} node(s))"


class RayPool:
    """``n`` :class:`RolloutWorker` Ray actors with one request in flight each."""

    def __init__(self, cfg_dict: dict, n: int, seed: int, log):
        import ray

        from agents.workers import WORKER_SEED_STRIDE, RolloutWorker

        self._ray = ray
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(RolloutWorker)
        self._cfg = cfg_dict
        self._seed = seed
        self._stride = WORKER_SEED_STRIDE
        self._log = log
        self.n = int(n)
        self.restarts = 0
        self._restarts_of = [0] * self.n
        self._consecutive = [0] * self.n
        self._dead = set()
        self.weights_ref = None
        self.handles = [self._create(i) for i in range(self.n)]
        self.pending: dict = {}

    @property
    def alive(self) -> int:
        return self.n - len(self._dead)

    def _create(self, i: int):
        # a fresh seed per restart, so a re-created worker does not replay its episodes
        seed = self._seed + self._stride * (i + 1) + 7919 * self._restarts_of[i]
        return self._remote.options(name=None).remote(self._cfg, i, seed)

    def _submit(self, i: int) -> None:
        ref = self.handles[i].rollout.remote(self.weights_ref)
        self.pending[ref] = i

    def broadcast(self, version: int, weights: dict) -> None:
        """One ``ray.put`` of the new weights; every later request carries it."""
        first = self.weights_ref is None
        self.weights_ref = self._ray.put((int(version), weights))
        if first:
            for i in range(self.n):
                self._submit(i)

    def _restart(self, i: int, exc: Exception) -> None:
        self._consecutive[i] += 1
        if self._consecutive[i] > MAX_CONSECUTIVE_RESTARTS:
            raise RacingError(f"rollout worker {i} died {self._consecutive[i]} times in a row without delivering "
                              f"a batch; last error: {exc}")
        try:
            self._ray.kill(self.handles[i])
        except Exception:  # already gone
            pass
        self.restarts += 1
        self._restarts_of[i] += 1
        self._dead.add(i)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._log(f"rollout worker {i} died ({type(exc).__name__}: {first_line[:160]}); restarting it "
                  f"(restart {self.restarts} of this run)")
        self.handles[i] = self._create(i)
        self._submit(i)

    def next_batch(self):
        ray = self._ray
        while True:
            ready, _ = ray.wait(list(self.pending), num_returns=1)
            ref = ready[0]
            i = self.pending.pop(ref)
            try:
                batch = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self._restart(i, exc)
                continue
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, RacingError):
                    raise cause from None
                raise
            self._consecutive[i] = 0
            self._dead.discard(i)
            self._submit(i)  # the worker steps on while the learner trains on this batch
            return batch

    def worker_pids(self) -> list[int]:
        return self._ray.get([h.pid.remote() for h in self.handles])

    def close(self) -> None:
        for h in self.handles:
            try:
                self._ray.kill(h)
            except Exception:
                pass


# ====================================================================== metrics
class Metrics:
    """TensorBoard scalars (step = environment steps) plus the same rows in ``metrics.jsonl``.

    On resume the TensorBoard writer purges events after the resumed step (``purge_step``),
    so a run killed after its last checkpoint continues as one unbroken curve.
    """

    def __init__(self, run_dir: Path, start_step: int, resumed: bool):
        from torch.utils.tensorboard import SummaryWriter

        tb = run_dir / "tb"
        if resumed and tb.is_dir():
            # TensorBoard reads event files in name order, and names start with the creation
            # time in whole seconds: make the new file sort after every older one
            stamps = [int(p.name.split(".")[3]) for p in tb.iterdir()
                      if p.name.startswith("events.out.tfevents.") and p.name.split(".")[3].isdigit()]
            while stamps and time.time() < max(stamps) + 1:
                time.sleep(0.05)
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=start_step + 1 if resumed else None)
        self.path = run_dir / "metrics.jsonl"
        if resumed and self.path.exists():
            keep = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("env_steps", 0) <= start_step:
                        keep.append(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
            self.path.write_text("".join(k + "\n" for k in keep))

    def write(self, step: int, scalars: dict) -> None:
        clean = {k: float(v) for k, v in scalars.items() if v is not None and math.isfinite(float(v))}
        for k, v in clean.items():
            self.writer.add_scalar(k, v, global_step=int(step))
        self.writer.flush()
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"env_steps": int(step), **clean}) + "\n")

    def close(self) -> None:
        self.writer.close()


class Window:
    """Statistics gathered between two metric rows."""

    def __init__(self):
        self.reset(time.perf_counter(), 0, 0)

    def reset(self, t: float, env_steps: int, grad_steps: int):
        self.t0, self.steps0, self.grad0 = t, env_steps, grad_steps
        self.returns, self.lengths, self.lap_times = [], [], []
        self.terms = defaultdict(list)
        self.losses = defaultdict(list)
        self.lags = []
        self.laps = 0
        self.valid_laps = 0

    def add_batch(self, batch, version: int) -> None:
        self.lags.append(float(version - batch.policy_version.mean()))
        for ep in batch.episodes:
            self.returns.append(ep.episode_return)
            self.lengths.append(ep.length)
            for k, v in ep.terms.items():
                self.terms[k].append(v)
        for lap in batch.laps:
            self.laps += 1
            if lap.valid:
                self.valid_laps += 1
                self.lap_times.append(lap.time_s)

    def scalars(self, now: float, env_steps: int, grad_steps: int) -> dict:
        dt = max(now - self.t0, 1e-9)
        out = {
            "perf/env_steps_per_s": (env_steps - self.steps0) / dt,
            "perf/grad_steps_per_s": (grad_steps - self.grad0) / dt,
            "charts/laps": self.laps,
            "charts/valid_laps": self.valid_laps,
            "charts/episodes": len(self.returns),
        }
        if self.lags:
            out["perf/weights_lag"] = float(np.mean(self.lags))
        if self.returns:
            out["charts/episode_return"] = float(np.mean(self.returns))
            out["charts/episode_length"] = float(np.mean(self.lengths))
        for k, v in self.terms.items():
            out[f"rewards/{k}"] = float(np.mean(v))
        if self.lap_times:
            out["charts/lap_time_s"] = float(np.mean(self.lap_times))
        for k, v in self.losses.items():
            out[k] = float(np.mean(v))
        return out


# ====================================================================== evaluation
def run_evaluation(cfg, driver_path: Path, env_steps: int, run_dir: Path) -> dict:
    """Evaluate the driver file on every evaluation track with :func:`agents.evaluate.evaluate`;
    writes ``eval/step_<env_steps>.json`` and returns the ``eval/...`` scalars."""
    from agents.evaluate import evaluate

    ev = cfg.evaluation
    results = {}
    for track in ev.tracks:
        res, _ = evaluate(str(driver_path), track, vehicle=cfg.vehicle, laps=ev.laps, opponents=ev.opponents,
                          opponent_skill=str(ev.opponent_skill), seed=ev.seed, races=ev.races, progress=False)
        results[track] = res
    out_dir = run_dir / "eval"
    out_dir.mkdir(exist_ok=True)
    tmp = out_dir / f".step_{env_steps:012d}.json.tmp"
    tmp.write_text(json.dumps({"env_steps": env_steps, "results": results}, indent=2) + "\n")
    os.replace(tmp, out_dir / f"step_{env_steps:012d}.json")
    return eval_scalars(results)


def eval_scalars(results: dict) -> dict:
    """``eval/...`` scalars: the first track's figures unprefixed, every track's under
    ``eval/<track>/...`` when there are several."""
    out = {}
    for k, (track, res) in enumerate(results.items()):
        figs = {
            "lap_time_s": res.get("best_lap_s"),
            "gap_to_reference_pct": res.get("gap_to_reference_pct"),
            "completed_laps": res.get("completed_laps"),
            "collisions": (res.get("collisions") or {}).get("total"),
            "at_fault_collisions": (res.get("collisions") or {}).get("at_fault"),
            "off_track_s": res.get("off_track_s"),
            "position": res.get("finish_position"),
        }
        figs = {name: v for name, v in figs.items() if v is not None}
        if k == 0:
            out.update({f"eval/{name}": v for name, v in figs.items()})
        if len(results) > 1:
            safe = str(track).replace("/", "_").replace(":", "_")
            out.update({f"eval/{safe}/{name}": v for name, v in figs.items()})
    return out


# ====================================================================== the loop
def check_specs(cfg) -> None:
    """Load every track and the vehicle the config names, so a bad spec fails here, naming
    its key, rather than inside a rollout worker on another machine."""
    from racing.trackio import load_track
    from racing.vehicle import load_vehicle

    specs = [(f"tracks[{i}].track", t.track) for i, t in enumerate(cfg.tracks)]
    specs += [(f"evaluation.tracks[{i}]", t) for i, t in enumerate(cfg.evaluation.tracks)]
    for key, spec in specs:
        if spec.strip().lower() == "random":
            continue
        try:
            load_track(spec)
        except RacingError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    try:
        load_vehicle(cfg.vehicle)
    except RacingError as exc:
        raise ConfigError(f"vehicle: {exc}") from None


def _default_out(config_path: str | None) -> Path:
    stem = Path(config_path).stem if config_path else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg, run_dir, *, workers: int | None = None, address: str | None = None, total_steps: int | None = None,
          resume: bool = False, progress: bool = True, log=None, on_batch=None) -> dict:
    """Train until ``total_steps`` environment steps (summed over all cars, workers and
    races; default ``cfg.total_steps``) and return the summary written to ``summary.json``.

    Args:
        cfg: :class:`agents.config.TrainConfig` (ignored on resume: the checkpoint's is used).
        run_dir: output directory (created). With ``resume`` it must hold checkpoints.
        workers: rollout workers (0: one in-process worker, no Ray); default the config's.
        address: Ray cluster to join (default ``RAY_ADDRESS``, else a local Ray).
        resume: continue the run in ``run_dir`` from its latest checkpoint.
        progress: show a progress bar on stderr.
        log: a function taking one line of text (default: print to stderr).
        on_batch: called as ``on_batch(pool, learner)`` after every batch is added
            (monitoring hooks; the Ray tests kill a worker from it).
    """
    from agents.checkpoint import DRIVER_FILE, atomic_torch_save, latest_checkpoint, load_state, save_checkpoint
    from agents.config import TrainConfig, dump_config, from_dict, to_dict
    from agents.workers import ENV_IDS

    run_dir = Path(run_dir)
    state = None
    if resume:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise ConfigError(f"--resume {run_dir}: no checkpoints in {run_dir / 'checkpoints'}")
        state = load_state(ckpt)
        if state["format"] != "racing-checkpoint":
            raise ConfigError(f"{ckpt}: a driver file, not a training checkpoint")
        cfg = from_dict(TrainConfig, state["config"])
    if workers is not None:
        cfg = cfg.with_overrides(**{"workers.count": int(workers)})
    if total_steps is not None:
        cfg = cfg.with_overrides(total_steps=int(total_steps))
    total = cfg.total_steps

    # fail before starting anything when a scenario's env does not exist
    import gymnasium as gym

    import envs  # noqa: F401

    for s in cfg.scenarios:
        if ENV_IDS[s.kind] not in gym.registry:
            raise ConfigError(f"scenarios: kind '{s.kind}' is not available yet: the environment {ENV_IDS[s.kind]} "
                              f"is not registered; use kind: time_trial")
    check_specs(cfg)

    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    bar = None

    def say(msg: str) -> None:
        if log is not None:
            log(msg)
        elif bar is not None:
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    cfg_dict = to_dict(cfg)
    E = cfg.cars_per_worker
    D = cfg.obs_config.dim
    learner = Learner(cfg, n_envs=E, obs_dim=D)
    stats = {"first_valid_lap": None, "best_lap_s": None, "sessions": 0}
    if state is not None:
        learner.load_state_dict(state)
        stats.update(state.get("stats") or {})
        say(f"resumed from {latest_checkpoint(run_dir)} at {learner.env_steps} environment steps"
            f"{'' if state.get('replay_buffer') is not None else ' (replay buffer not stored: refilling it)'}")
    stats["sessions"] = int(stats.get("sessions", 0)) + 1
    start_steps = learner.env_steps
    metrics = Metrics(run_dir, start_steps, resumed=state is not None)
    seed = cfg.seed + start_steps  # a resumed session does not replay the first one's episodes

    n_workers = cfg.workers.count
    started_ray = False
    pool = None
    t_start = time.perf_counter()
    wall0 = learner.wall_time_s
    try:
        if n_workers == 0:
            pool = LocalPool(cfg_dict, seed)
        else:
            started_ray, where = start_ray(address, n_workers)
            say(f"rollout workers: {n_workers} Ray actors on {where}")
            import ray

            cpus = ray.cluster_resources().get("CPU", 0)
            if cpus < n_workers:
                say(f"warning: {n_workers} workers need {n_workers} CPUs but the cluster has {cpus:g}; "
                    f"the others wait until CPUs free up")
            pool = RayPool(cfg_dict, n_workers, seed, say)
        pool.broadcast(learner.weights_version, learner.actor_weights())
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=min(start_steps, total), unit="step", unit_scale=True, file=sys.stderr,
                       dynamic_ncols=True, desc="train", smoothing=0.05)
        al = cfg.algorithm
        owed = 0.0
        last_sync = learner.grad_steps
        ckpt_every = cfg.checkpoint.every_steps
        eval_every = cfg.evaluation.every_steps
        log_every = cfg.log_every_steps
        next_ckpt = (start_steps // ckpt_every + 1) * ckpt_every
        next_eval = (start_steps // eval_every + 1) * eval_every if eval_every else None
        next_log = (start_steps // log_every + 1) * log_every
        window = Window()
        window.reset(time.perf_counter(), start_steps, learner.grad_steps)
        last_lap = None

        def checkpoint_now():
            learner.wall_time_s = wall0 + time.perf_counter() - t_start
            save_checkpoint(run_dir, learner.state_dict(stats, cfg.checkpoint.replay_buffer), learner.env_steps,
                            cfg.checkpoint.keep_last)
            atomic_torch_save(learner.driver_record(), run_dir / DRIVER_FILE)

        while learner.env_steps < total:
            batch = pool.next_batch()
            learner.add_batch(batch)
            window.add_batch(batch, learner.weights_version)
            if on_batch is not None:
                on_batch(pool, learner)
            for lap in batch.laps:
                if lap.valid:
                    last_lap = lap.time_s
                    if stats["best_lap_s"] is None or lap.time_s < stats["best_lap_s"]:
                        stats["best_lap_s"] = lap.time_s
                    if stats["first_valid_lap"] is None:
                        stats["first_valid_lap"] = {
                            "wall_s": round(wall0 + time.perf_counter() - t_start, 1),
                            "env_steps": learner.env_steps, "lap_time_s": round(lap.time_s, 3),
                            "scenario": lap.scenario}
                        say(f"first valid lap after {stats['first_valid_lap']['wall_s']:.0f} s of training "
                            f"({learner.env_steps} environment steps): {lap.time_s:.2f} s ({lap.scenario})")
            # train at the update-to-data ratio once the buffer holds enough
            if learner.buffer_transitions >= max(al.learning_starts, al.batch_size):
                owed += batch.env_steps * al.updates_per_step
                n = int(owed)
                owed -= n
                for k, v in learner.train(n).items():
                    window.losses[k].append(v)
                if learner.grad_steps - last_sync >= cfg.workers.sync_interval:
                    learner.weights_version += 1
                    pool.broadcast(learner.weights_version, learner.actor_weights())
                    last_sync = learner.grad_steps
            steps = learner.env_steps
            if bar is not None:
                bar.update(min(steps, total) - bar.n)
                post = f"{learner.grad_steps} grad steps"
                if last_lap is not None:
                    post += f", lap {last_lap:.2f}s"
                bar.set_postfix_str(post, refresh=False)
            if steps >= next_log or steps >= total:
                now = time.perf_counter()
                row = window.scalars(now, steps, learner.grad_steps)
                row["workers/alive"] = pool.alive
                row["workers/restarts"] = pool.restarts
                row["perf/buffer_transitions"] = learner.buffer_transitions
                row["charts/weights_version"] = learner.weights_version
                metrics.write(steps, row)
                window.reset(now, steps, learner.grad_steps)
                next_log = (steps // log_every + 1) * log_every
            if steps >= next_ckpt or steps >= total:
                checkpoint_now()
                next_ckpt = (steps // ckpt_every + 1) * ckpt_every
            if next_eval is not None and (steps >= next_eval or steps >= total):
                atomic_torch_save(learner.driver_record(), run_dir / DRIVER_FILE)
                scalars = run_evaluation(cfg, run_dir / DRIVER_FILE, steps, run_dir)
                metrics.write(steps, scalars)
                if "eval/lap_time_s" in scalars:
                    say(f"eval at {steps} steps: best lap {scalars['eval/lap_time_s']:.2f} s "
                        f"({scalars.get('eval/gap_to_reference_pct', float('nan')):+.1f}% to the reference)")
                else:
                    say(f"eval at {steps} steps: no valid lap "
                        f"({scalars.get('eval/completed_laps', 0)} laps completed)")
                next_eval = (steps // eval_every + 1) * eval_every
    except KeyboardInterrupt:
        if learner.env_steps > start_steps:
            say(f"interrupted: writing a checkpoint at {learner.env_steps} steps")
            learner.wall_time_s = wall0 + time.perf_counter() - t_start
            save_checkpoint(run_dir, learner.state_dict(stats, cfg.checkpoint.replay_buffer), learner.env_steps,
                            cfg.checkpoint.keep_last)
        raise
    finally:
        if bar is not None:
            bar.close()
        metrics.close()
        if pool is not None:
            pool.close()
        if started_ray:
            import ray

            ray.shutdown()

    learner.wall_time_s = wall0 + time.perf_counter() - t_start
    if not (run_dir / DRIVER_FILE).exists() or learner.env_steps == start_steps:
        atomic_torch_save(learner.driver_record(), run_dir / DRIVER_FILE)
    summary = {
        "run_dir": str(run_dir),
        "env_steps": learner.env_steps,
        "grad_steps": learner.grad_steps,
        "weights_version": learner.weights_version,
        "wall_time_s": round(learner.wall_time_s, 1),
        "workers": n_workers,
        "worker_restarts": pool.restarts if pool is not None else 0,
        "first_valid_lap": stats["first_valid_lap"],
        "best_training_lap_s": None if stats["best_lap_s"] is None else round(stats["best_lap_s"], 3),
        "driver": str(run_dir / DRIVER_FILE),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ====================================================================== CLI
def _cmd(args: argparse.Namespace) -> int:
    from agents.config import load_config

    if args.resume:
        for flag, value in (("--config", args.config), ("--out", args.out), ("--seed", args.seed)):
            if value is not None:
                raise ConfigError(f"{flag} cannot be combined with --resume (the run's checkpoint holds its config, "
                                  f"directory and seed)")
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise ConfigError(f"--resume {args.resume}: no such directory")
        cfg = None
    else:
        if not args.config:
            raise ConfigError("--config is required (e.g. --config configs/quickstart.yaml), or --resume DIR")
        cfg = load_config(args.config)
        if args.seed is not None:
            cfg = cfg.with_overrides(seed=args.seed)
        run_dir = Path(args.out) if args.out else _default_out(args.config)
        from agents.checkpoint import list_checkpoints

        if list_checkpoints(run_dir):
            raise ConfigError(f"{run_dir} already holds a training run; use --resume {run_dir} or another --out")
    for flag, value, lo in (("--workers", args.workers, 0), ("--steps", args.steps, 1)):
        if value is not None and value < lo:
            raise ConfigError(f"{flag} must be >= {lo}, got {value}")
    def on_sigterm(signum, frame):  # a scheduler's stop: checkpoint like Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        summary = train(cfg, run_dir, workers=args.workers, address=args.address, total_steps=args.steps,
                        resume=bool(args.resume), progress=not args.no_progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    lap = summary["first_valid_lap"]
    print(f"trained {summary['env_steps']} environment steps ({summary['grad_steps']} gradient steps) in "
          f"{summary['wall_time_s']:.0f} s; " + (f"first valid lap after {lap['wall_s']:.0f} s "
                                                  f"({lap['lap_time_s']:.2f} s)" if lap else "no valid lap yet"))
    if summary["best_training_lap_s"] is not None:
        print(f"best training lap {summary['best_training_lap_s']:.2f} s")
    print(f"run directory: {summary['run_dir']}  (racing eval --driver {summary['run_dir']} --track ...)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a SAC/TQC driver with rollout workers (Ray)",
                       description="Train a soft actor-critic driver. Ray starts on this machine by default; "
                                   "--address (or RAY_ADDRESS) joins an existing cluster; --workers 0 runs in one "
                                   "process without Ray.")
    p.add_argument("--config", help="training config YAML (e.g. configs/quickstart.yaml)")
    p.add_argument("--workers", type=int, help="rollout workers (0: no Ray, one process); default: the config's")
    p.add_argument("--address", help="Ray cluster address to join (default: RAY_ADDRESS, else start Ray here)")
    p.add_argument("--steps", type=int, help="environment steps summed over all cars, workers and races; with "
                                             "--resume the new total to reach")
    p.add_argument("--out", help="run directory (default runs/<config>-<time>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest checkpoint")
    p.add_argument("--seed", type=int, help="base seed (default: the config's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd)

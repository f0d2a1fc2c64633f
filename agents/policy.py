"""The trained actor on the CPU: in rollout workers, and as a driver for ``racing eval``.

:class:`ActorRunner` holds a Stable-Baselines3 actor network (the same class the learner
trains, rebuilt from its shape) and maps observations to actions in [-1, 1]: stochastic
(exploration, in rollout workers) or deterministic (the mean action squashed by tanh,
for evaluation). Torch runs on one thread (on a 2-core machine two threads were several
times slower; see REFERENCES.md).

:class:`PolicyDriver` is a :class:`agents.drivers.Driver` built from a checkpoint, a driver
file or a training run directory: it builds observations with the environments' builder
(:func:`envs.observation.build_observations`, the settings the policy was trained with)
and runs the deterministic actor. ``agents.drivers.make_driver(PATH)`` returns one.

The ``driver`` record (stored in checkpoints and ``driver.pt``) is a plain dict:
``algorithm`` (``sac``/``tqc``), ``net_arch``, ``activation``, ``obs_dim``, ``observation``
(the :class:`envs.observation.ObsConfig` fields), ``actor`` (state dict of tensors),
``env_steps``, ``version``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from racing.errors import ConfigError

ACTION_DIM = 2  # [steer, throttle_brake]


def activation_class(name: str):
    import torch.nn as nn

    return {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}[name]


def policy_class(algorithm: str):
    """The SB3 policy class of an algorithm name (``sac`` or ``tqc``)."""
    if algorithm == "sac":
        from stable_baselines3.sac.policies import SACPolicy

        return SACPolicy
    if algorithm == "tqc":
        from sb3_contrib.tqc.policies import TQCPolicy

        return TQCPolicy
    raise ConfigError(f"unknown algorithm {algorithm!r}; choose one of: sac, tqc")


def spaces_for(obs_dim: int):
    """Observation and action spaces of the racing environments (actions in [-1, 1], so the
    policy's action space and the env's coincide and no rescaling is needed)."""
    from gymnasium import spaces

    obs = spaces.Box(-np.inf, np.inf, (int(obs_dim),), np.float32)
    act = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
    return obs, act


def build_actor(algorithm: str, obs_dim: int, net_arch, activation: str = "relu"):
    """A fresh SB3 actor network of the given shape (on the CPU, evaluation mode)."""
    obs_space, act_space = spaces_for(obs_dim)
    policy = policy_class(algorithm)(obs_space, act_space, lr_schedule=lambda _: 0.0, net_arch=list(net_arch),
                                     activation_fn=activation_class(activation))
    actor = policy.actor
    actor.set_training_mode(False)
    return actor


def set_torch_threads(n: int = 1) -> None:
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already set (it can be set once per process)
        pass


class ActorRunner:
    """An actor network on the CPU that loads broadcast weights and picks actions."""

    def __init__(self, algorithm: str, obs_dim: int, net_arch, activation: str = "relu"):
        import torch

        self._torch = torch
        self.obs_dim = int(obs_dim)
        self.actor = build_actor(algorithm, obs_dim, net_arch, activation)
        self.version = -1

    def load(self, weights: dict, version: int) -> None:
        """Load a state dict (tensors or numpy arrays, e.g. read-only arrays from Ray)."""
        torch = self._torch
        state = {k: torch.as_tensor(np.array(v)) if not isinstance(v, torch.Tensor) else v
                 for k, v in weights.items()}
        self.actor.load_state_dict(state)
        self.version = int(version)

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions ``(len(obs), 2)`` float32 in [-1, 1] for observations ``(len(obs), obs_dim)``."""
        torch = self._torch
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
            a = self.actor(x, deterministic=deterministic)
        return a.numpy().astype(np.float32, copy=False)


def actor_weights_numpy(actor) -> dict:
    """The actor's state dict as numpy arrays (what a worker broadcast carries)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in actor.state_dict().items()}


class PolicyDriver:
    """A trained policy driving cars of a :class:`racing.sim.RaceSim` (deterministic)."""

    def __init__(self, record: dict, name: str):
        from envs.observation import ObsConfig

        self.name = name
        self.record = record
        self.obs_config = ObsConfig(**record["observation"])
        if self.obs_config.dim != int(record["obs_dim"]):
            raise ConfigError(f"{name}: observation settings give {self.obs_config.dim} inputs but the network "
                              f"expects {record['obs_dim']}")
        set_torch_threads(1)
        self.runner = ActorRunner(record["algorithm"], record["obs_dim"], record["net_arch"], record["activation"])
        self.runner.load(record["actor"], record.get("version", 0))

    def reset(self, sim, cars, seed: int) -> None:
        """Nothing to reset: the policy is a deterministic function of the observation."""

    def act(self, sim, cars) -> np.ndarray:
        from envs.observation import build_observations

        obs = build_observations(sim, np.asarray(cars, dtype=np.int64), self.obs_config)
        return self.runner.act(obs, deterministic=True).astype(np.float64)


def load_record(path) -> dict:
    """The ``driver`` record of a checkpoint or driver file (checked for the keys a driver needs)."""
    from agents.checkpoint import load_state

    state = load_state(path)
    record = state["driver"] if state["format"] == "racing-checkpoint" else state
    missing = [k for k in ("algorithm", "net_arch", "activation", "obs_dim", "observation", "actor") if k not in record]
    if missing:
        raise ConfigError(f"{path}: driver record lacks {', '.join(missing)}")
    return record


def load_driver(spec) -> PolicyDriver:
    """A :class:`PolicyDriver` from a checkpoint file, a driver file or a run directory."""
    from agents.checkpoint import resolve_driver_file

    return PolicyDriver(load_record(resolve_driver_file(spec)), name=str(Path(spec)))

"""Reinforcement-learning interfaces to the racing simulator.

Importing this package registers ``racing/TimeTrial-v0`` with Gymnasium (single env:
:class:`envs.time_trial.TimeTrialEnv`; ``gymnasium.make_vec`` returns the batched
:class:`envs.vector.TimeTrialVectorEnv`) and ``racing/Race-v0`` (one learner among
scripted opponents: :class:`envs.race.RaceEnv`, batched :class:`envs.race.RaceVectorEnv`). :func:`parallel_env` makes the PettingZoo
:class:`envs.parallel.RacingParallelEnv`. The observation builder
(:func:`envs.observation.build_observations`) and the reward terms
(:mod:`envs.rewards`) are shared by all of them and need neither gymnasium nor pettingzoo,
so a runtime without them can still ``import envs.observation``.
"""

from __future__ import annotations

TIME_TRIAL_ID = "racing/TimeTrial-v0"
RACE_ID = "racing/Race-v0"

try:
    import gymnasium as _gym
except ImportError:  # the observation builder and rewards work without gymnasium
    _gym = None

if _gym is not None and TIME_TRIAL_ID not in _gym.registry:
    _gym.register(
        id=TIME_TRIAL_ID,
        entry_point="envs.time_trial:TimeTrialEnv",
        vector_entry_point="envs.vector:TimeTrialVectorEnv",
        max_episode_steps=3000,  # = envs.time_trial.DEFAULT_MAX_EPISODE_STEPS (300 s at 10 Hz)
    )
if _gym is not None and RACE_ID not in _gym.registry:
    _gym.register(
        id=RACE_ID,
        entry_point="envs.race:RaceEnv",
        vector_entry_point="envs.race:RaceVectorEnv",
        max_episode_steps=3000,
    )


def parallel_env(**kwargs):
    """A PettingZoo ``ParallelEnv`` where every car is an agent; keyword arguments as
    :class:`envs.parallel.RacingParallelEnv` (``track``, ``vehicle``, ``num_cars``, ...)."""
    try:
        import gymnasium  # noqa: F401
        import pettingzoo  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"envs.parallel_env needs gymnasium and pettingzoo ({exc}): "
                          f"pip install 'racing-rl[envs]'") from exc
    from envs.parallel import RacingParallelEnv

    return RacingParallelEnv(**kwargs)


__all__ = ["TIME_TRIAL_ID", "RACE_ID", "parallel_env"]

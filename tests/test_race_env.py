"""racing/Race-v0: one learner among scripted opponents."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the envs)
from envs.race import PASS_WINDOW_AHEAD_M, RACE_TERMS, RaceEnv, RaceVectorEnv
from racing import dynamics as dy
from racing.errors import ConfigError


def test_check_env():
    env = gym.make("racing/Race-v0", track="oval", opponents=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Box.*bound.*")  # the observation Box is unbounded
        check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_make_vec_returns_the_batched_env():
    venv = gym.make_vec("racing/Race-v0", num_envs=3, track="oval", opponents=2)
    assert isinstance(venv, RaceVectorEnv)
    obs, info = venv.reset(seed=1)
    assert obs.shape == (3, venv.single_observation_space.shape[0])
    assert venv.core.sim.num_races == 3 and venv.core.sim.cars_per_race == 3
    for _ in range(20):
        obs, rew, term, trunc, info = venv.step(np.tile([0.0, 0.5], (3, 1)))
    assert set(RACE_TERMS) == set(info["reward_terms"])
    venv.close()


@pytest.mark.parametrize("start", ["grid", "rolling", "mid_race"])
def test_reward_terms_sum_and_info(start):
    env = RaceEnv(track="club", opponents=3, opponent_skill="amateur", start=start)
    obs, info = env.reset(seed=3)
    assert 1 <= info["position"] <= 4
    rng = np.random.default_rng(0)
    for _ in range(60):
        obs, rew, term, trunc, info = env.step(rng.uniform(-0.3, 1.0, 2))
        assert np.isfinite(obs).all()
        assert sum(info["reward_terms"].values()) == rew
        assert set(info) >= {"position", "gap_ahead_m", "gap_behind_m", "contacts", "at_fault", "passes", "lap"}
        if term or trunc:
            break
    env.close()


def test_grid_start_places_the_learner_on_a_random_slot():
    env = RaceEnv(track="club", opponents=5)
    slots = set()
    for seed in range(8):
        _, info = env.reset(seed=seed)
        slots.add(info["position"])
        assert np.all(env.sim.speed == 0.0) and np.all(env.sim.dist < 0)
    assert len(slots) >= 3


def test_mid_race_start_scatters_opponents_around_the_learner():
    env = RaceEnv(track="flowing", opponents=4, start="mid_race")
    env.reset(seed=5)
    sim = env.sim
    gaps = sim.dist[1:] - sim.dist[0]
    assert np.all(np.abs(gaps) <= 60.0 + 1e-6) and len(np.unique(np.round(gaps, 3))) == 4
    assert np.all(sim.speed > 0.0)


def test_passing_term_is_symmetric():
    venv = RaceVectorEnv(1, track="oval", opponents=1)
    venv.reset(seed=0)
    sim = venv.core.sim

    class Res:  # the learner (car 0) moves from 5 m behind car 1 to 5 m ahead of it
        terms = np.zeros((2, 6))
        events = sim.step(np.zeros((2, 2)))

    venv._prev_dist[:] = [100.0, 105.0]
    sim.F[dy.F_DIST, :] = [110.0, 105.0]
    terms, rew = venv._learner_terms(Res)
    assert terms[0, RACE_TERMS.index("passing")] == pytest.approx(venv.weights.passing)
    venv._prev_dist[:] = [110.0, 105.0]
    sim.F[dy.F_DIST, :] = [100.0, 105.0]
    terms, _ = venv._learner_terms(Res)
    assert terms[0, RACE_TERMS.index("passing")] == pytest.approx(-venv.weights.passing)
    # outside the window (the other car far ahead after the move): no bonus
    venv._prev_dist[:] = [100.0, 100.0 + 1.0]
    sim.F[dy.F_DIST, :] = [100.0 + PASS_WINDOW_AHEAD_M + 50.0, 101.0]
    terms, _ = venv._learner_terms(Res)
    assert terms[0, RACE_TERMS.index("passing")] == 0.0


def test_seeded_determinism():
    def run():
        env = RaceEnv(track="club", opponents=2, start="rolling")
        obs, _ = env.reset(seed=11)
        out = [obs]
        for k in range(40):
            obs, rew, *_ = env.step(np.array([0.1 * np.sin(k), 0.7]))
            out.append(np.append(obs, rew))
        return np.concatenate(out)

    assert np.array_equal(run(), run())


def test_bad_arguments():
    with pytest.raises(ConfigError, match="opponents"):
        RaceEnv(opponents=0)
    with pytest.raises(ConfigError, match="start"):
        RaceEnv(start="flying")
    with pytest.raises(ConfigError, match="skill"):
        RaceEnv(opponent_skill="godlike")
    with pytest.raises(ConfigError, match="unknown reward weight"):
        RaceEnv(reward_weights={"overtakes": 1.0})
    env = RaceEnv(track="oval", opponents=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0]))


def test_rgb_array_render_draws_the_field():
    env = RaceEnv(track="oval", opponents=3, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.array([0.0, 0.5]))
    frame = env.render()
    assert frame.shape == (640, 640, 3) and frame.dtype == np.uint8 and frame.std() > 5
    env.close()

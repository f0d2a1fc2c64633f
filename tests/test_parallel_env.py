"""The PettingZoo ParallelEnv: every car an agent, opponents in the observation, collision terms."""

import math

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

import envs
from envs.observation import ObsConfig, build_observations, observation_spec
from envs.rewards import TERM_NAMES
from racing import dynamics as dy
from racing.errors import ConfigError
from racing.sim import RaceSim


@pytest.mark.parametrize("kw", [dict(), dict(track="random", start="random", num_cars=3, laps=1)])
def test_parallel_api(kw):
    env = envs.parallel_env(**kw)
    with pytest.warns(UserWarning, match="ignoring unknown option"):
        parallel_api_test(env, num_cycles=100)


def test_spaces_and_defaults():
    env = envs.parallel_env()
    assert env.possible_agents == ["car_0", "car_1", "car_2", "car_3"]
    assert env.observation_space("car_0").shape == (14 + 120 + 20,)
    assert env.observation_space("car_1") is env.observation_space("car_1")
    assert env.action_space("car_0").shape == (2,)
    obs, infos = env.reset(seed=0)
    assert set(obs) == set(env.agents) == set(env.possible_agents)
    assert all(o.dtype == np.float32 for o in obs.values())
    assert sorted(i["position"] for i in infos.values()) == [1, 2, 3, 4]
    assert env.sim.speed.max() == 0.0  # standing grid start
    assert len(env.observation_spec()) == 154


def _two_cars(big_ring, s, d, speed, yaw=(0.0, 0.0)):
    env = envs.parallel_env(track=big_ring, num_cars=2, start="grid")
    env.reset(seed=0, options={"speed": 0.0})
    env.sim.reset_race(0, s=s, d=d, speed=speed, standing=False, heading_offset=list(yaw))
    env.core.anchor_dist[:] = env.sim.dist
    return env


def _step_until_contact(env, action, max_steps=30):
    for _ in range(max_steps):
        obs, rew, term, trunc, infos = env.step({a: np.array(action, np.float32) for a in env.agents})
        for a in rew:
            terms = infos[a]["reward_terms"]
            assert tuple(terms) == TERM_NAMES and sum(terms.values()) == rew[a]
        if any(i["reward_terms"]["collision"] != 0.0 for i in infos.values()):
            return rew, infos
    raise AssertionError("no contact")


def test_rear_end_is_charged_to_the_car_behind(big_ring):
    # car 0 at 25 m/s runs into car 1 at 10 m/s, 8 m ahead on the same line
    env = _two_cars(big_ring, s=[100.0, 108.0], d=[0.0, 0.0], speed=[25.0, 10.0])
    rew, infos = _step_until_contact(env, [0.0, 0.0])
    t0, t1 = infos["car_0"]["reward_terms"], infos["car_1"]["reward_terms"]
    assert t0["collision"] == t1["collision"] == -4.0
    assert t1["rear_end"] == 0.0
    # closing speed about 15 m/s (a little less after a step of drag): -0.1 v^2
    assert -0.1 * 16.0**2 < t0["rear_end"] < -0.1 * 10.0**2


def test_side_contact_is_not_a_rear_end(big_ring):
    # side by side, steering into each other
    env = _two_cars(big_ring, s=[100.0, 100.0], d=[1.3, -1.3], speed=[20.0, 20.0], yaw=(-0.05, 0.05))
    rew, infos = _step_until_contact(env, [0.0, 0.3])
    for a in ("car_0", "car_1"):
        assert infos[a]["reward_terms"]["collision"] == -4.0
        assert infos[a]["reward_terms"]["rear_end"] == 0.0


def test_opponent_slots_staged(big_ring):
    """Car 0 with one car 20 m ahead (2 m to its left, 5 m/s faster) and one 30 m behind
    (1 m to its right); the range behind excludes a third car 70 m back."""
    sim = RaceSim(big_ring, "gt3", cars_per_race=4)
    sim.reset_race(0, s=[500.0, 520.0, 470.0, 430.0], d=[0.0, 2.0, -1.0, 0.0], speed=[20.0, 25.0, 18.0, 20.0],
                   standing=False)
    cfg = ObsConfig(course_points=4, num_opponents=2)
    spec = observation_spec(cfg)
    raw = {d["name"]: v for d, v in zip(spec, build_observations(sim, [0], cfg)[0])}
    assert raw["ahead_0_present"] == 1.0 and raw["ahead_1_present"] == 0.0
    assert raw["ahead_0_x"] * 100 == pytest.approx(20.0, abs=0.05)
    assert raw["ahead_0_y"] * 10 == pytest.approx(2.0 + 20.0**2 / (2 * 4000.0), abs=0.05)
    assert raw["ahead_0_vx"] * 10 == pytest.approx(5.0, abs=0.05)
    assert raw["ahead_0_vy"] * 10 == pytest.approx(25.0 * 20.0 / 4000.0, abs=0.05)  # its heading turned
    assert raw["behind_0_present"] == 1.0 and raw["behind_1_present"] == 0.0
    assert raw["behind_0_x"] * 100 == pytest.approx(-30.0, abs=0.05)
    assert raw["behind_0_y"] * 10 == pytest.approx(-1.0 + 30.0**2 / (2 * 4000.0), abs=0.05)
    assert raw["behind_0_vx"] * 10 == pytest.approx(-2.0, abs=0.05)
    for f in ("present", "x", "y", "vx", "vy"):  # empty slots are all zeros
        assert raw[f"ahead_1_{f}"] == 0.0 and raw[f"behind_1_{f}"] == 0.0
    # nearest first; a parked car is not listed
    sim.reset_race(0, s=[500.0, 540.0, 510.0, 430.0], d=0.0, speed=20.0, standing=False, active=[1, 1, 1, 0])
    o = build_observations(sim, [0], cfg)[0]
    raw = {d["name"]: v for d, v in zip(spec, o)}
    assert raw["ahead_0_x"] * 100 == pytest.approx(10.0, abs=0.05) and raw["ahead_1_x"] * 100 == pytest.approx(40.0, abs=0.05)
    assert raw["behind_0_present"] == 0.0


def test_opponent_gap_wraps_around_the_line(big_ring):
    L = big_ring.length
    sim = RaceSim(big_ring, "gt3", cars_per_race=2)
    sim.reset_race(0, s=[L - 5.0, 10.0], d=0.0, speed=10.0, standing=False)
    cfg = ObsConfig(course_points=2, num_opponents=1)
    raw = {d["name"]: v for d, v in zip(observation_spec(cfg), build_observations(sim, [0, 1], cfg)[0])}
    assert raw["ahead_0_present"] == 1.0 and raw["ahead_0_x"] * 100 == pytest.approx(15.0, abs=0.05)


def test_determinism_and_stuck_agents_leave():
    def run(seed):
        env = envs.parallel_env(num_cars=3, stuck_time_s=2.0, max_episode_steps=80)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(1)
        trace = [np.stack([obs[a] for a in env.possible_agents])]
        rewards = []
        left = []
        while env.agents:
            acts = {a: rng.uniform(-1, 1, 2).astype(np.float32) for a in env.agents}
            if "car_0" in acts:
                acts["car_0"][1] = -1.0  # car 0 stays on the grid with the brakes on
            obs, rew, term, trunc, infos = env.step(acts)
            trace += [obs[a] for a in sorted(obs)]
            rewards += [rew[a] for a in sorted(rew)]
            for a in term:
                if term[a]:
                    left.append(a)
                    assert infos[a]["stuck"] and a not in env.agents
                    assert env.sim.I[dy.I_ACTIVE, env.possible_agents.index(a)] == 0
        return np.concatenate([np.ravel(t) for t in trace]), np.array(rewards), left, env

    o1, r1, left, env = run(4)
    o2, r2, _, _ = run(4)
    assert o1.tobytes() == o2.tobytes() and r1.tobytes() == r2.tobytes()
    assert left and left[0] == "car_0"
    assert env.step({}) == ({}, {}, {}, {}, {})


def test_bad_actions_and_arguments():
    env = envs.parallel_env(num_cars=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="actions must be finite"):
        env.step({"car_0": np.array([np.nan, 0.0]), "car_1": np.zeros(2)})
    with pytest.raises(ValueError, match=r"missing actions for live agent\(s\) \['car_1'\]"):
        env.step({"car_0": np.zeros(2)})
    with pytest.raises(ValueError, match=r"car_1 must have shape \(2,\)"):
        env.step({"car_0": np.zeros(2), "car_1": np.zeros(3)})
    with pytest.raises(ConfigError, match="num_cars"):
        envs.parallel_env(num_cars=0)
    with pytest.raises(ConfigError, match="num_opponents"):
        envs.parallel_env(num_opponents=-1)
    with pytest.raises(ConfigError, match="max_episode_steps"):
        envs.parallel_env(max_episode_steps=0)
    # finite out-of-range actions are clipped
    obs, rew, *_ = env.step({"car_0": np.array([5.0, 1e9]), "car_1": np.zeros(2)})
    assert env.sim.F[dy.F_STEER_CMD, 0] == 1.0 and env.sim.F[dy.F_THROTTLE_CMD, 0] == 1.0
    assert all(math.isfinite(r) for r in rew.values())


def test_render_rgb_array():
    env = envs.parallel_env(num_cars=2, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (640, 640, 3) and frame.dtype == np.uint8
    env.close()

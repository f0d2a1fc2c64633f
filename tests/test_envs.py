"""racing/TimeTrial-v0, its batched vector env, the observation builder and the reward terms."""

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers racing/TimeTrial-v0)
from envs.core import RaceCore
from envs.observation import NUM_EGO, ObsConfig, build_observations, observation_spec
from envs.rewards import SOLO_TERMS, TERM_NAMES, RewardWeights, compute_reward_terms, peak_slip_angles
from envs.time_trial import TimeTrialEnv
from envs.vector import TimeTrialVectorEnv
from racing import dynamics as dy
from racing.errors import ConfigError, TrackError
from racing.sim import RaceSim

ID = "racing/TimeTrial-v0"
# gymnasium's checker warns about the unbounded Box (the observation has no hard bounds)
pytestmark = pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value.*")


def _actions(seed, n, k=None):
    """Plausible driving actions: random steering, mostly throttle."""
    rng = np.random.default_rng(seed)
    shape = (n, 2) if k is None else (n, k, 2)
    a = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    a[..., 1] = rng.uniform(-0.3, 1.0, shape[:-1])
    return a


# ------------------------------------------------------------------ API conformance
@pytest.mark.parametrize("track", ["club", "random"])
def test_check_env(track, monkeypatch):
    # check_env also builds the env with every declared render mode; "human" needs a
    # window, which SDL's dummy driver provides without a screen
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = gym.make(ID, track=track)
    check_env(env.unwrapped)
    env.close()


def test_defaults_and_registration():
    env = gym.make(ID)
    assert env.spec.max_episode_steps == 3000
    base = env.unwrapped
    assert isinstance(base, TimeTrialEnv)
    assert base.sim.track_of(0).name == "club" and base.sim.vehicles[0].name == "gt3"
    assert env.observation_space.shape == (134,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (2,)
    assert base.render_mode is None and base._renderer is None
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (134,)
    assert info["lap"] == 0 and info["best_lap_s"] is None and info["progress_m"] == 0.0
    assert [d["name"] for d in base.observation_spec()][:3] == ["vx", "vy", "yaw_rate"]


def test_time_limit_truncates_and_stuck_terminates():
    env = gym.make(ID, max_episode_steps=20)
    env.reset(seed=1, options={"start": "random", "speed": 10.0})
    for t in range(20):
        _, _, term, trunc, _ = env.step(np.array([0.0, 0.2], np.float32))
        assert not term
    assert trunc
    # parked with the brakes on: no progress for stuck_time_s -> terminated (a true end)
    env = gym.make(ID, stuck_time_s=2.0)
    env.reset(seed=1, options={"speed": 0.0})
    for t in range(19):
        _, _, term, trunc, info = env.step(np.array([0.0, -1.0], np.float32))
        assert not term
    _, _, term, trunc, info = env.step(np.array([0.0, -1.0], np.float32))
    assert term and not trunc and info["stuck"] and not info["finished"]


def test_laps_terminate_with_lap_record(ring100):
    from racing.autopilot import pure_pursuit

    env = TimeTrialEnv(track=ring100, laps=1)
    L = ring100.length
    env.reset(seed=0, options={"s": L - 20.0, "speed": 25.0})
    records = []
    for _ in range(int(1.5 * L / 25.0 * 10)):
        u = pure_pursuit(env.sim, [0], 25.0)[0]
        _, _, term, trunc, info = env.step(u.astype(np.float32))
        if "lap_record" in info:
            records.append(info["lap_record"])
        if term:
            break
    assert term and info["finished"] and not info["stuck"]
    assert len(records) == 1 and records[0]["lap"] == 1 and records[0]["valid"]
    assert records[0]["time_s"] == pytest.approx(L / 25.0, rel=0.02)
    assert info["lap"] == 1 and info["last_lap_s"] == records[0]["time_s"] == info["best_lap_s"]
    assert len(records[0]["sectors_s"]) == 3


# ------------------------------------------------------------------ determinism
@pytest.mark.parametrize("track", ["club", "random"])
def test_seeded_determinism_bit_identical(track):
    acts = _actions(3, 150)

    def run(seed):
        env = gym.make(ID, track=track, max_episode_steps=60, stuck_time_s=3.0)
        obs, _ = env.reset(seed=seed)
        out_obs, out_rew = [obs], []
        for a in acts:
            obs, r, term, trunc, _ = env.step(a)
            out_obs.append(obs)
            out_rew.append(r)
            if term or trunc:
                obs, _ = env.reset()
                out_obs.append(obs)
        return np.stack(out_obs), np.array(out_rew), env.unwrapped.sim.track_of(0)

    o1, r1, t1 = run(7)
    o2, r2, t2 = run(7)
    assert o1.tobytes() == o2.tobytes() and r1.tobytes() == r2.tobytes()
    if track == "random":
        assert t1.source == t2.source and t1.source.startswith("random:")
    o3, _, _ = run(8)
    assert o3.shape != o1.shape or not np.array_equal(o1, o3)


def test_random_track_changes_per_reset():
    env = gym.make(ID, track="random")
    sources = set()
    for k in range(3):
        env.reset(seed=k if k == 0 else None)
        sources.add(env.unwrapped.sim.track_of(0).source)
    assert len(sources) == 3


# ------------------------------------------------------------------ reward terms
def _check_terms_sum(info, reward, names):
    terms = info["reward_terms"]
    assert tuple(terms) == names
    assert sum(terms.values()) == reward  # exactly: the reward is their sum in this order
    assert all(math.isfinite(v) for v in terms.values())


def test_reward_terms_sum_to_reward_single_env():
    env = gym.make(ID, stuck_time_s=3.0)
    env.reset(seed=2)
    seen = {name: False for name in SOLO_TERMS}
    for a in _actions(2, 300):
        obs, r, term, trunc, info = env.step(a)
        _check_terms_sum(info, r, SOLO_TERMS)
        for k, v in info["reward_terms"].items():
            seen[k] |= v != 0.0
        if term or trunc:
            env.reset()
    assert all(seen.values()), seen  # random driving touches every term


def test_reward_terms_physics(big_ring):
    """Progress is metres driven; off the track it is zero and off_course = -w v^2."""
    sim = RaceSim(big_ring, "gt3")
    w = RewardWeights()
    sim.reset_race(0, s=[100.0], d=[0.0], speed=[20.0], standing=False)
    ev = sim.step([[0.0, 0.0]])
    t = compute_reward_terms(sim.F, sim.I, sim.P, ev.rows, [0], w)[0]
    assert t[TERM_NAMES.index("progress")] == pytest.approx(sim.F[dy.F_PROGRESS_STEP, 0]) == pytest.approx(2.0, rel=0.02)
    assert t[1] == 0.0 and t[2] == 0.0 and t[4] == 0.0 and t[5] == 0.0
    # off the track on the left (beyond the 8 m edge, before the wall)
    sim.reset_race(0, s=[100.0], d=[10.0], speed=[20.0], standing=False)
    ev = sim.step([[0.0, 0.0]])
    t = compute_reward_terms(sim.F, sim.I, sim.P, ev.rows, [0], w)[0]
    v2 = sim.F[dy.F_VX, 0] ** 2 + sim.F[dy.F_VY, 0] ** 2
    assert t[0] == 0.0 and t[1] == pytest.approx(-0.01 * v2)
    # into the wall: the wall term is -w * integral of v^2 dt over the contact
    sim.reset_race(0, s=[100.0], d=[13.0], speed=[20.0], standing=False, heading_offset=[0.3])
    ev = sim.step([[0.0, 0.0]])
    t = compute_reward_terms(sim.F, sim.I, sim.P, ev.rows, [0], w)[0]
    assert sim.I[dy.I_WALL, 0] == 1
    wall = ev.of_type(dy.EV_WALL)
    contact_s = wall[:, dy.E_AUX].sum()
    assert 0.0 < contact_s <= 0.1 + 1e-9
    assert t[2] == pytest.approx(-0.01 * wall[:, dy.E_SPEED2T].sum())
    assert -0.01 * 20.0**2 * contact_s * 1.01 < t[2] < -0.01 * 15.0**2 * contact_s


def test_tyre_slip_term_and_peak_slip_angles():
    sim = RaceSim(_ring(), "gt3")
    peak = peak_slip_angles(sim.P)
    P = sim.P[0]
    # the magic formula peaks there: the slope vanishes
    for k, col in ((0, dy.P_BF), (1, dy.P_BR)):
        _, slope = dy.magic(P[col], P[dy.P_C], P[dy.P_E], peak[0, k])
        assert abs(slope) < 1e-6
    assert peak[0, 0] == pytest.approx(math.tan(math.pi / (2 * 1.6)) / P[dy.P_BF])
    # with E != 0 the bisection still finds the peak
    P2 = P.copy()
    P2[dy.P_E] = -0.8
    pk2 = peak_slip_angles(P2[None])[0, 0]
    assert abs(dy.magic(P2[dy.P_BF], P2[dy.P_C], P2[dy.P_E], pk2)[1]) < 1e-6
    # a sideways-sliding car pays for the slip beyond the peak; a car at rest does not
    sim.reset_race(0, s=[10.0], d=[0.0], speed=[20.0], standing=False)
    sim.F[dy.F_ALPHAF, 0] = 0.5
    sim.F[dy.F_ALPHAR, 0] = -0.05
    t = compute_reward_terms(sim.F, sim.I, sim.P, np.zeros((0, dy.NUM_E)), [0], RewardWeights(), peak)[0]
    assert t[3] == pytest.approx(-0.25 * (0.5 - peak[0, 0]))
    sim.F[dy.F_VX, 0] = 0.0
    t = compute_reward_terms(sim.F, sim.I, sim.P, np.zeros((0, dy.NUM_E)), [0], RewardWeights(), peak)[0]
    assert t[3] == 0.0


def _ring(radius=100.0, width=8.0):
    from conftest import ring_track

    return ring_track(radius, width)


def test_reward_weights_config(tmp_path):
    assert RewardWeights().as_array().tolist() == [1.0, 0.01, 0.01, 0.25, 4.0, 0.1]
    w = RewardWeights.from_dict({"progress": 2, "rear_end": 0.5})
    assert w.progress == 2.0 and w.rear_end == 0.5 and w.wall == 0.01
    with pytest.raises(ConfigError, match=r"unknown reward weight\(s\) \['progres'\]; allowed: \['progress'"):
        RewardWeights.from_dict({"progres": 1.0})
    with pytest.raises(ConfigError, match="wall.*>= 0"):
        RewardWeights(wall=-1.0)
    with pytest.raises(ConfigError, match="finite"):
        RewardWeights(progress=float("nan"))
    p = tmp_path / "w.yaml"
    p.write_text("progress: 1.5\ntyre_slip: 0.0\n")
    assert RewardWeights.from_yaml(p).tyre_slip == 0.0
    p.write_text("speed: 1.0\n")
    with pytest.raises(ConfigError, match="w.yaml.*unknown reward weight"):
        RewardWeights.from_yaml(p)
    # the weights reach the env: zero weights give zero terms
    env = gym.make(ID, reward_weights={"progress": 0.0, "off_course": 0.0, "wall": 0.0, "tyre_slip": 0.0})
    env.reset(seed=0)
    for a in _actions(0, 30):
        _, r, *_ = env.step(a)
        assert r == 0.0


# ------------------------------------------------------------------ observation layout
def test_observation_spec_matches_layout():
    cfg = ObsConfig(course_points=5, num_opponents=2)
    spec = observation_spec(cfg)
    assert len(spec) == cfg.dim == 14 + 30 + 20
    assert all(set(d) == {"name", "unit", "scale", "description"} for d in spec)
    names = [d["name"] for d in spec]
    assert len(set(names)) == len(names)
    assert names[NUM_EGO] == "left_0_x" and names[NUM_EGO + 10] == "centre_0_x" and names[NUM_EGO + 20] == "right_0_x"
    assert names[NUM_EGO + 30] == "ahead_0_present" and names[NUM_EGO + 40] == "behind_0_present"
    assert ObsConfig().dim == 134


def _stage(sim, track, theta, radius, d=0.0, yaw_offset=0.0, speed=0.0):
    """Put car 0 exactly on a ring at angle ``theta`` [rad], ``d`` left of the centreline
    (towards the centre), heading along the tangent plus ``yaw_offset``."""
    rho = radius - d
    x, y = rho * np.cos(theta), rho * np.sin(theta)
    s, dd, i = track.project(x, y)
    sim.reset_race(0, s=[s], d=[dd], speed=[speed], standing=False)
    sim.F[dy.F_X, 0], sim.F[dy.F_Y, 0] = x, y
    sim.F[dy.F_YAW, 0] = theta + np.pi / 2 + yaw_offset
    sim.F[dy.F_S, 0], sim.F[dy.F_D, 0], sim.I[dy.I_SEG, 0] = s, dd, i


def test_observation_staged_on_a_ring(ring100):
    """A car on a left-hand ring (R = 100 m, 8 m each side) at a known pose: the course
    points lie on circles of known radius in the car frame."""
    R, w = 100.0, 8.0
    L = ring100.length
    cfg = ObsConfig(course_points=10)
    spec = observation_spec(cfg)
    sim = RaceSim(ring100, "gt3")
    _stage(sim, ring100, 1.0, R, speed=20.0)
    raw = {d["name"]: v for d, v in zip(spec, build_observations(sim, [0], cfg)[0])}
    assert raw["vx"] == pytest.approx(20.0 / 50.0) and raw["vy"] == 0.0 and raw["yaw_rate"] == 0.0
    P = sim.vehicles[0]
    assert raw["load_front"] == pytest.approx(P.lr_m / P.wheelbase_m, rel=1e-6)
    assert raw["load_rear"] == pytest.approx(P.lf_m / P.wheelbase_m, rel=1e-6)
    assert raw["off_track"] == 0.0 and raw["wall_contact"] == 0.0
    look = max(30.0, 20.0 * 6.0)  # 120 m ahead at 20 m/s
    for k in range(10):
        phi = (k * look / 10) * 2 * np.pi / L  # angle turned along the centreline
        for line, rho in (("left", R - w), ("centre", R), ("right", R + w)):
            x = rho * np.sin(phi)  # forward
            y = R - rho * np.cos(phi)  # left (the ring turns left)
            assert raw[f"{line}_{k}_x"] * 100.0 == pytest.approx(x, abs=0.01), (line, k)
            assert raw[f"{line}_{k}_y"] * 10.0 == pytest.approx(y, abs=0.01), (line, k)
    assert raw["left_0_y"] * 10 == pytest.approx(w, abs=1e-3) and raw["right_0_y"] * 10 == pytest.approx(-w, abs=1e-3)
    assert abs(raw["centre_0_y"]) < 1e-4 and abs(raw["centre_0_x"]) < 1e-4

    # 2 m right of the centreline, yawed 0.2 rad to the left, slow: the points shift and
    # rotate; the look-ahead is the 30 m minimum
    _stage(sim, ring100, 2.5, R, d=-2.0, yaw_offset=0.2, speed=3.0)
    raw = {d["name"]: v for d, v in zip(spec, build_observations(sim, [0], cfg)[0])}
    c, s = np.cos(0.2), np.sin(0.2)
    for k in range(10):
        phi = (k * 30.0 / 10) * 2 * np.pi / L
        for line, rho in (("left", R - w), ("centre", R), ("right", R + w)):
            # in the tangent frame at the car (forward, left), the car sits at (0, -2)
            xt, yt = rho * np.sin(phi), R - rho * np.cos(phi) + 2.0
            assert raw[f"{line}_{k}_x"] * 100 == pytest.approx(c * xt + s * yt, abs=0.01), (line, k)
            assert raw[f"{line}_{k}_y"] * 10 == pytest.approx(-s * xt + c * yt, abs=0.01), (line, k)


def test_observation_flags_and_previous_action(big_ring):
    sim = RaceSim(big_ring, "gt3")
    sim.reset_race(0, s=[100.0], d=[10.0], speed=[15.0], standing=False)
    sim.step([[0.3, -0.6]])
    obs = build_observations(sim)[0]
    assert obs[10] == pytest.approx(0.3) and obs[11] == pytest.approx(-0.6)
    assert obs[12] == 1.0  # off track beyond the 8 m edge
    assert obs[9] == pytest.approx(sim.F[dy.F_STEER, 0] / sim.vehicles[0].max_steer_rad, rel=1e-6) and obs[9] > 0


# ------------------------------------------------------------------ robustness
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), extreme=st.sampled_from([1.0, 1e6, 1e300]))
def test_fuzz_random_and_extreme_actions_stay_finite(seed, extreme):
    env = gym.make(ID, max_episode_steps=40)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for t in range(60):
        kind = rng.integers(3)
        if kind == 0:
            a = rng.uniform(-1, 1, 2)
        elif kind == 1:
            a = rng.choice([-extreme, extreme], 2)
        else:
            a = rng.uniform(-extreme, extreme, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the passive checker warns about out-of-bounds actions
            obs, r, term, trunc, info = env.step(a.astype(np.float64))
        assert np.isfinite(obs).all() and math.isfinite(r)
        assert all(math.isfinite(v) for v in info["reward_terms"].values())
        if term or trunc:
            env.reset()


def test_vector_env_extreme_actions_stay_finite():
    venv = TimeTrialVectorEnv(num_envs=4, max_episode_steps=25, stuck_time_s=1.0)
    venv.reset(seed=9)
    rng = np.random.default_rng(9)
    for t in range(60):
        a = rng.choice([-1e12, -1.0, 0.0, 1.0, 1e12], (4, 2))
        obs, r, term, trunc, info = venv.step(a)
        assert np.isfinite(obs).all() and np.isfinite(r).all()
        assert all(np.isfinite(v).all() for v in info["reward_terms"].values())


@pytest.mark.parametrize("bad", [[np.nan, 0.0], [0.0, np.inf], [-np.inf, np.nan]])
def test_non_finite_actions_raise(bad):
    env = TimeTrialEnv()
    env.reset(seed=0)
    before = env.sim.F.copy()
    with pytest.raises(ValueError, match="actions must be finite"):
        env.step(np.array(bad, np.float32))
    assert np.array_equal(env.sim.F, before)
    with pytest.raises(ValueError, match=r"action must have shape \(2,\)"):
        env.step(np.zeros(3, np.float32))
    venv = TimeTrialVectorEnv(num_envs=3)
    venv.reset(seed=0)
    a = np.zeros((3, 2))
    a[1] = bad
    with pytest.raises(ValueError, match="actions must be finite"):
        venv.step(a)


def test_bad_constructor_arguments():
    with pytest.raises(TrackError, match="unknown track 'nowhere'"):
        TimeTrialEnv(track="nowhere")
    with pytest.raises(TrackError, match="track must be"):
        TimeTrialEnv(track=42)
    with pytest.raises(ConfigError, match="unknown vehicle 'kart'"):
        TimeTrialEnv(vehicle="kart")
    with pytest.raises(ConfigError, match="course_points must be"):
        TimeTrialEnv(course_points=0)
    with pytest.raises(ConfigError, match="course_points must be an integer"):
        TimeTrialEnv(course_points=2.5)
    with pytest.raises(ConfigError, match=r"unknown reward weight\(s\) \['speed'\]"):
        TimeTrialEnv(reward_weights={"speed": 1.0})
    with pytest.raises(ConfigError, match="laps must be"):
        TimeTrialEnv(laps=0)
    with pytest.raises(ConfigError, match="start must be"):
        TimeTrialEnv(start="pitlane")
    with pytest.raises(ConfigError, match="stuck_time_s"):
        TimeTrialEnv(stuck_time_s=0)
    with pytest.raises(ConfigError, match="render_mode"):
        TimeTrialEnv(render_mode="ascii")
    with pytest.raises(ConfigError, match=r"unknown sim_config key\(s\) \['hz'\]"):
        TimeTrialEnv(sim_config={"hz": 20})
    with pytest.raises(ConfigError, match="num_envs must be a positive integer"):
        gym.make_vec(ID, num_envs=0)
    with pytest.raises(ConfigError, match="autoreset_mode"):
        TimeTrialVectorEnv(num_envs=2, autoreset_mode="Disabled")
    env = TimeTrialEnv()
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['sped'\]; allowed"):
        env.reset(seed=0, options={"sped": 3.0})


# ------------------------------------------------------------------ vector env
def test_make_vec_returns_the_batched_env():
    venv = gym.make_vec(ID, num_envs=4)
    assert isinstance(venv, TimeTrialVectorEnv)
    assert venv.sim.num_races == 4 and venv.sim.cars_per_race == 1  # one simulator batch
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert venv.max_episode_steps == 3000
    assert venv.observation_space.shape == (4, 134) and venv.action_space.shape == (4, 2)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (4, 134) and obs.dtype == np.float32
    assert info["lap"].shape == (4,)
    # the sub-envs start in different places and step independently
    assert len(set(np.round(info["s_m"], 3))) == 4
    a = np.zeros((4, 2))
    a[:, 1] = [1.0, -1.0, 0.0, 0.5]
    for _ in range(5):
        obs, r, term, trunc, info = venv.step(a)
    assert r.shape == (4,) and term.dtype == bool and trunc.dtype == bool
    for k in range(4):
        assert sum(info["reward_terms"][n][k] for n in SOLO_TERMS) == r[k]
    assert info["speed_mps"][0] > info["speed_mps"][1] or info["speed_mps"][1] == 0.0
    venv.close()


def _single_env_runs(seeds, acts, **kw):
    """Reference: one gym.make env per seed, reset by hand when an episode ends (the
    vector env's NEXT_STEP autoreset does the same one step later)."""
    out = []
    for i, seed in enumerate(seeds):
        env = gym.make(ID, **kw)
        obs, _ = env.reset(seed=seed)
        rows, rews, dones = [obs], [], []
        done = False
        for a in acts[:, i]:
            if done:
                obs, _ = env.reset()
                r, term, trunc = 0.0, False, False
            else:
                obs, r, term, trunc, _ = env.step(a)
            done = term or trunc
            rows.append(obs)
            rews.append(r)
            dones.append((term, trunc))
        out.append((np.stack(rows), np.array(rews), dones))
    return out


@pytest.mark.parametrize("track", ["club", "random"])
def test_vector_env_equals_single_envs_with_autoreset(track):
    n, steps = 3, 90
    acts = _actions(5, steps, n)
    kw = dict(track=track, max_episode_steps=40, stuck_time_s=2.5)
    venv = gym.make_vec(ID, num_envs=n, **kw)
    obs, _ = venv.reset(seed=100)
    vrows, vrews, vdones = [obs], [], []
    for a in acts:
        obs, r, term, trunc, _ = venv.step(a)
        vrows.append(obs)
        vrews.append(r)
        vdones.append(np.stack([term, trunc], axis=1))
    vrows, vrews, vdones = np.stack(vrows), np.stack(vrews), np.stack(vdones)
    assert vdones.any(axis=(0, 2)).all()  # every sub-env ended at least one episode
    for i, (rows, rews, dones) in enumerate(_single_env_runs([100 + k for k in range(n)], acts, **kw)):
        assert rows.tobytes() == vrows[:, i].tobytes(), i
        assert rews.tobytes() == vrews[:, i].tobytes(), i
        assert [tuple(d) for d in vdones[:, i].tolist()] == dones


def test_vector_same_step_autoreset_and_reset_mask():
    venv = TimeTrialVectorEnv(num_envs=2, max_episode_steps=5, autoreset_mode="SameStep")
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs0, _ = venv.reset(seed=3)
    a = np.tile([0.0, 0.5], (2, 1))
    for t in range(4):
        obs, r, term, trunc, info = venv.step(a)
        assert "final_obs" not in info
    obs, r, term, trunc, info = venv.step(a)
    assert trunc.all() and info["_final_obs"].all()
    # the returned observation is the next episode's first one; the last is in final_obs
    ref = TimeTrialEnv()
    ref.reset(seed=3)
    for t in range(5):
        last, *_ = ref.step(a[0].astype(np.float32))
    first, _ = ref.reset()
    assert np.array_equal(info["final_obs"][0], last) and np.array_equal(obs[0], first)
    assert set(info["final_info"][0]["reward_terms"]) == set(SOLO_TERMS)
    assert info["progress_m"][0] == 0.0  # the info of the new episode
    # reset_mask resets only the selected sub-env
    venv.step(a)
    s_before = venv.sim.s.copy()
    obs, info = venv.reset(options={"reset_mask": np.array([False, True]), "speed": 0.0})
    assert venv.sim.s[0] == s_before[0] and venv.sim.speed[1] == 0.0
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.array([1, 0])})


def test_vector_reset_options_per_env():
    venv = TimeTrialVectorEnv(num_envs=3, start="grid")
    obs, info = venv.reset(seed=0, options={"s": np.array([10.0, 20.0, 30.0]), "speed": 12.0})
    assert np.allclose(venv.sim.s, [10.0, 20.0, 30.0]) and np.allclose(venv.sim.speed, 12.0)
    with pytest.raises(ValueError, match="one value per reset environment"):
        venv.reset(options={"s": [1.0, 2.0]})


def test_core_grid_start_is_a_standing_start(ring100):
    core = RaceCore(1, 1, ring100, start="grid")
    core.reset_races([0], [np.random.default_rng(0)])
    assert core.sim.speed[0] == 0.0 and core.sim.I[dy.I_TIMING, 0] == 1
    assert core.sim.s[0] == pytest.approx(ring100.length - 8.0)


# ------------------------------------------------------------------ rendering
def test_render_rgb_array_and_no_window_by_default():
    env = gym.make(ID, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.array([0.0, 1.0], np.float32))
    frame = env.render()
    assert frame.shape == (640, 640, 3) and frame.dtype == np.uint8 and frame.std() > 0
    env.close()
    plain = gym.make(ID)
    plain.reset(seed=0)
    plain.step(np.zeros(2, np.float32))
    assert plain.unwrapped._renderer is None
    venv = TimeTrialVectorEnv(num_envs=2, render_mode="rgb_array")
    venv.reset(seed=0)
    frames = venv.render()
    assert len(frames) == 2 and frames[0].shape == (640, 640, 3)
    venv.close()

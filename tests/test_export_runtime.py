"""racing export and the torch-free runtime: ONNX parity, observation parity, skill, errors."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from racing import dynamics as dy
from racing.cli import main
from racing.errors import ConfigError, RacingError


@pytest.fixture(scope="module")
def runtime(exported_builtin):
    from agents.runtime import Driver

    return Driver(exported_builtin)


def _record_observations(n_races=8, steps=380, track="club"):
    """Observations of scripted drivers of mixed skill (on and off the limit, some
    off-track moments): ``n_races x steps`` rows, plus the sim and its cars at the end."""
    from agents.scripted import ScriptedDriver
    from envs.observation import build_observations
    from racing.sim import RaceSim
    from racing.trackio import load_track

    tr = load_track(track)
    sim = RaceSim(tr, "gt3", num_races=n_races, cars_per_race=1)
    for b in range(n_races):
        sim.reset_race(b, s=[37.0 * b], d=[0.0], speed=[10.0 + 3 * b], standing=False)
    drivers = [ScriptedDriver(skill, seed=1) for skill in ("alien", "rookie")]
    cars = np.arange(n_races)
    rows = []
    for _ in range(steps):
        rows.append(build_observations(sim, cars))
        u = np.concatenate([drivers[0].act(sim, cars[::2]), drivers[1].act(sim, cars[1::2])])
        order = np.concatenate([cars[::2], cars[1::2]])
        controls = np.zeros((n_races, 2))
        controls[order] = u
        sim.step(controls)
    return np.concatenate(rows), sim


# ------------------------------------------------------------------------ export
def test_export_writes_model_and_complete_spec(exported_builtin):
    import hashlib

    spec = json.loads(exported_builtin.with_suffix(".json").read_text())
    assert spec["format"] == "racing-onnx-driver" and spec["onnx"]["file"] == "driver.onnx"
    assert spec["onnx"]["sha256"] == hashlib.sha256(exported_builtin.read_bytes()).hexdigest()
    obs = spec["observation"]
    assert obs["dim"] == 134 == len(obs["elements"])
    assert [e["index"] for e in obs["elements"]] == list(range(134))
    for e in obs["elements"]:
        assert {"name", "unit", "scale", "description"} <= set(e) and e["description"]
    assert obs["elements"][0]["name"] == "vx" and obs["elements"][14]["name"] == "left_0_x"
    for key in ("frames", "normalisation", "projection", "course_points", "loads_and_slip"):
        assert len(obs["how"][key]) > 40
    assert [a["name"] for a in spec["action"]["elements"]] == ["steer", "throttle_brake"]
    assert spec["control"]["control_hz"] == 10.0
    assert spec["vehicle"]["name"] == "gt3" and spec["vehicle"]["params"]["mass_kg"] > 0
    assert spec["training"]["env_steps"] > 1_000_000 and len(spec["training"]["source_sha256"]) == 64
    assert "configs/builtin.yaml" in spec["training"]["run"]
    assert spec["project"]["name"] == "racing-rl"
    assert exported_builtin.stat().st_size < 5_000_000


def test_onnx_matches_torch_actor_on_recorded_observations(exported_builtin):
    """Parity: a few thousand observations recorded from driving, ONNX vs the torch actor
    (the policy's own deterministic action) within 1e-5."""
    import onnxruntime as ort

    from agents.export import deterministic_actor, load_record
    from agents.policy import load_driver

    obs, _ = _record_observations()
    assert obs.shape == (8 * 380, 134) and np.all(np.isfinite(obs))
    assert obs[:, 12].max() == 1.0  # some rows were recorded off the track
    sess = ort.InferenceSession(str(exported_builtin), providers=["CPUExecutionProvider"])
    got = sess.run(["action"], {"obs": obs})[0]
    torch_driver = load_driver("agents/data/builtin_driver.pt")
    want = torch_driver.runner.act(obs, deterministic=True)
    assert np.max(np.abs(got - want)) <= 1e-5
    import torch

    record, _ = load_record("builtin")
    with torch.no_grad():
        module = deterministic_actor(record)(torch.as_tensor(obs)).numpy()
    assert np.max(np.abs(module - want)) <= 1e-6
    assert np.all(np.abs(got) <= 1.0) and got.std(axis=0).min() > 0.05  # real, varied actions


def test_export_cli_and_bad_inputs(tmp_path, capsys):
    assert main(["export", "--driver", "scripted:pro", "--out", str(tmp_path / "a.onnx")]) == 2
    assert "not a trained policy" in capsys.readouterr().err
    assert main(["export", "--driver", "builtin", "--out", str(tmp_path / "a.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["export", "--driver", "builtin", "--out", str(tmp_path / "no" / "a.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "--driver", str(tmp_path / "missing"), "--out", str(tmp_path / "a.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp*"))  # nothing half-written


# ------------------------------------------------------------------------ runtime
def test_runtime_needs_neither_torch_nor_ray(exported_builtin):
    code = (
        "import sys\n"
        "from agents.runtime import Driver\n"
        f"d = Driver({str(exported_builtin)!r})\n"
        "tr = d.track('club')\n"
        "x, y, h = tr.frenet_to_xy([5.0, 25.0], [0.0, 1.0])\n"
        "a = d.act(tr, dict(x=x, y=y, yaw=h, vx=[20.0, 25.0], vy=0.0, yaw_rate=0.0, prev_steer=0.0,"
        " prev_throttle_brake=0.0), skill=[1.0, 0.5])\n"
        "assert a.shape == (2, 2)\n"
        "print(sorted(m for m in ('torch', 'ray', 'stable_baselines3') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _raw_states(sim, cars, full: bool):
    F = sim.F
    st = dict(x=F[dy.F_X, cars], y=F[dy.F_Y, cars], yaw=F[dy.F_YAW, cars], vx=F[dy.F_VX, cars],
              vy=F[dy.F_VY, cars], yaw_rate=F[dy.F_R, cars], prev_steer=F[dy.F_STEER_CMD, cars],
              prev_throttle_brake=F[dy.F_THROTTLE_CMD, cars])
    if full:
        st.update(steer_angle=F[dy.F_STEER, cars], ax=F[dy.F_AX, cars], ay=F[dy.F_AY, cars],
                  slip_front=F[dy.F_ALPHAF, cars], slip_rear=F[dy.F_ALPHAR, cars], load_front=F[dy.F_FZF, cars],
                  load_rear=F[dy.F_FZR, cars], wall_contact=sim.I[dy.I_WALL, cars])
    return st


def test_raw_states_give_the_environments_observations(runtime):
    """From raw states the runtime builds exactly the environments' observation when the
    game sends every field; with only the required ones, everything but the quantities it
    must estimate (accelerations, slip, loads, steering angle) is still exact."""
    from envs.observation import build_observations

    _, sim = _record_observations(n_races=4, steps=60)
    cars = np.arange(4)
    want = build_observations(sim, cars)
    # the four races are on one track, so the runtime may treat them as one race (no opponents)
    got = runtime.observe(sim.track_of(0), _raw_states(sim, cars, full=True))
    np.testing.assert_array_equal(got, want)
    got = runtime.observe(sim.track_of(0), _raw_states(sim, cars, full=False))
    exact = [0, 1, 2, 10, 11, 12, 13] + list(range(14, 134))
    np.testing.assert_array_equal(got[:, exact], want[:, exact])
    # the estimates are close to the truth for a car driving normally
    assert np.max(np.abs(got[:, 5:9] - want[:, 5:9])) < 0.3


def test_act_sim_equals_the_checkpoint_driver(runtime):
    from agents.policy import load_driver

    _, sim = _record_observations(n_races=8, steps=40)
    cars = np.arange(8)
    ref = load_driver("agents/data/builtin_driver.pt").act(sim, cars)
    np.testing.assert_allclose(runtime.act_sim(sim, cars), ref, atol=1e-5)
    np.testing.assert_allclose(runtime.act(sim.track_of(0), _raw_states(sim, cars, full=True)), ref, atol=1e-5)


def _lap_times(res):
    return [lap["time_s"] for race in res["per_race"] for lap in race["laps"] if lap["valid"]]


def test_eval_with_onnx_gets_the_checkpoints_lap_times(exported_builtin):
    """Same laps as the checkpoint, within the closed loop's own sensitivity: the simulator
    is deterministic, but the learned driver amplifies differences (a 1e-7 change in one
    action grows e-fold per control step in places), so ONNX's float32 rounding, like a 1e-9
    m/s change of the start speed, moves single laps by up to a second. Over a batch of
    starts the two agree on lap count, validity and mean lap time."""
    from agents.evaluate import evaluate

    torch_res, _ = evaluate("builtin", "club", laps=2, races=6, progress=False)
    onnx_res, _ = evaluate(f"onnx:{exported_builtin}", "club", laps=2, races=6, progress=False)
    t_torch, t_onnx = _lap_times(torch_res), _lap_times(onnx_res)
    assert len(t_torch) >= 10 and len(t_onnx) >= 10  # of 12 laps, nearly all clean for both
    assert abs(np.mean(t_onnx) / np.mean(t_torch) - 1.0) < 0.01
    assert abs(np.min(t_onnx) / np.min(t_torch) - 1.0) < 0.02


# ------------------------------------------------------------------------ skill
def test_skill_settings_are_monotone_and_one_is_unmodified():
    from agents.runtime import skill_settings

    levels = [skill_settings(s) for s in (0.0, 0.25, 0.5, 0.75, 0.99, 1.0)]
    caps = [lv.speed_cap for lv in levels]
    assert caps == sorted(caps) and caps[0] == pytest.approx(0.6) and caps[-1] == np.inf
    assert [lv.reaction_s for lv in levels] == sorted([lv.reaction_s for lv in levels], reverse=True)
    assert levels[0].reaction_s == pytest.approx(0.2) and levels[-1].reaction_s == 0.0
    assert levels[0].noise_std == pytest.approx(0.05) and levels[-1].noise_std == 0.0
    for bad in (-0.1, 1.5, float("nan"), "hard", True):
        with pytest.raises(ConfigError, match="skill"):
            skill_settings(bad)


def test_skill_one_is_the_policy_and_lower_skills_are_reproducible(runtime):
    from agents.runtime import Driver

    _, sim = _record_observations(n_races=3, steps=30)
    cars = np.arange(3)
    st = _raw_states(sim, cars, full=True)
    tr = sim.track_of(0)
    from envs.observation import build_observations

    pure = runtime.policy(build_observations(sim, cars))
    np.testing.assert_array_equal(runtime.act(tr, st, skill=1.0), pure)
    a = Driver(runtime.path, seed=7)
    b = Driver(runtime.path, seed=7)
    seq_a = [a.act(tr, st, skill=[0.2, 0.6, 1.0]) for _ in range(6)]
    seq_b = [b.act(tr, st, skill=[0.2, 0.6, 1.0]) for _ in range(6)]
    np.testing.assert_array_equal(np.array(seq_a), np.array(seq_b))
    assert np.all(np.array(seq_a)[:, 2] == pure[2])  # the full-skill car is untouched
    assert np.any(np.array(seq_a)[:, 0] != pure[0])  # noise and delay act on the others
    a.reset()
    np.testing.assert_array_equal(a.act(tr, st, skill=[0.2, 0.6, 1.0]), seq_b[0])


def test_lower_skill_laps_slower_and_stays_on_the_road(exported_builtin):
    """One trained driver, easy to expert: on the club circuit every skill laps cleanly and
    lower skills lap slower (about 66, 75 and 98 s here)."""
    from agents.evaluate import evaluate

    times = {}
    for skill in (1.0, 0.5, 0.0):
        res, _ = evaluate(f"onnx:{exported_builtin}@{skill}", "club", laps=1, progress=False)
        assert res["completed_laps"] == 1 and res["laps"][0]["valid"] and res["wall_contacts"] == 0
        times[skill] = res["laps"][0]["time_s"]
    assert times[1.0] * 1.05 < times[0.5] and times[0.5] * 1.15 < times[0.0]


def test_speed_cap_lifts_off_above_the_capped_reference(runtime):
    """A car well above skill 0's speed cap brakes (at least the cap's braking), whatever the
    policy wants; the same car at full skill gets the policy's action."""
    from agents.runtime import CAP_MAX_BRAKE

    tr = runtime.track("oval")
    ref = runtime.reference(tr)
    s = np.array([50.0, 50.0])
    v = 0.9 * ref.speed_at(s)  # 90% of the limit: above skill 0's 60% cap, below full skill's
    x, y, h = tr.frenet_to_xy(s, [0.0, 0.0])
    st = dict(x=x, y=y, yaw=h, vx=v, vy=0.0, yaw_rate=0.0, prev_steer=0.0, prev_throttle_brake=1.0)
    runtime.reset()
    capped = runtime.act(tr, st, skill=[0.0, 1.0], ids=["slow", "fast"])
    assert capped[0, 1] <= -CAP_MAX_BRAKE  # far above the cap
    np.testing.assert_array_equal(capped[1], runtime.act(tr, st)[1])
    runtime.reset()


# ------------------------------------------------------------------------ errors
def test_runtime_bad_inputs(runtime, tmp_path, exported_builtin):
    from agents.runtime import Driver

    good = dict(x=0.0, y=0.0, yaw=0.0, vx=10.0, vy=0.0, yaw_rate=0.0, prev_steer=0.0, prev_throttle_brake=0.0)
    cases = [
        ({k: v for k, v in good.items() if k != "vx"}, "missing required field"),
        (dict(good, speed=3.0), "unknown field"),
        (dict(good, vx=float("nan")), "finite"),
        (dict(good, vx=[1.0, 2.0], vy=[0.0, 0.0, 0.0]), "has 3 values"),
        (dict(good, x="left"), "numbers"),
        ([], "no cars"),
        ([good, dict(good, ax=1.0)], "every car or for none"),
        (42, "mapping"),
    ]
    for states, message in cases:
        with pytest.raises(ConfigError, match=message):
            runtime.act("oval", states)
    with pytest.raises(ConfigError, match="skill"):
        runtime.act("oval", good, skill=2.0)
    with pytest.raises(ConfigError, match="one per car"):
        runtime.act("oval", good, skill=[0.5, 0.5])
    with pytest.raises(RacingError, match="nowhere"):
        runtime.act("nowhere", good)
    with pytest.raises(ConfigError, match="shape"):
        runtime.policy(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ConfigError, match="threads"):
        Driver(exported_builtin, threads=0)
    with pytest.raises(ConfigError, match="seed"):
        Driver(exported_builtin, seed=-1)
    # files
    with pytest.raises(ConfigError, match=".onnx"):
        Driver(tmp_path / "driver.txt")
    with pytest.raises(ConfigError, match="spec not found"):
        Driver(tmp_path / "driver.onnx")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable JSON"):
        Driver(tmp_path / "bad.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"this is no model")
    (tmp_path / "junk.json").write_text(exported_builtin.with_suffix(".json").read_text())
    with pytest.raises(ConfigError, match="not a loadable ONNX model"):
        Driver(tmp_path / "junk.onnx")
    with pytest.raises(ConfigError, match="after '@'"):
        from agents.drivers import make_driver

        make_driver(f"onnx:{exported_builtin}@fast")


def _observation_from_spec(spec, track, raw):
    """An independent implementation of the observation from ``driver.json`` alone (its
    element scales and the formulas in ``observation.how``), in plain numpy: what a game
    engine would write. ``raw``: the car's physics quantities by name (SI units)."""
    veh = spec["vehicle"]["params"]
    cfg = spec["observation"]["config"]
    named_scale = {"m*g (vehicle weight)": veh["mass_kg"] * 9.81, "max_steer_rad (vehicle)": veh["max_steer_rad"]}
    xs, ys, wl, wr, ds = track.x, track.y, track.w_left, track.w_right, track.ds
    n = len(xs)
    # projection: closest point on the closed polyline
    px, py = raw["x"], raw["y"]
    nx_, ny_ = np.roll(xs, -1), np.roll(ys, -1)
    sx, sy = nx_ - xs, ny_ - ys
    u = np.clip(((px - xs) * sx + (py - ys) * sy) / (sx * sx + sy * sy), 0.0, 1.0)
    i = int(np.argmin(np.hypot(xs + u * sx - px, ys + u * sy - py)))
    ui = u[i] if u[i] < 1.0 else 0.0
    s0 = (i + ui) * ds
    d = (sx[i] * (py - ys[i]) - sy[i] * (px - xs[i])) / math.hypot(sx[i], sy[i])
    j = (i + 1) % n
    off = d > wl[i] * (1 - ui) + wl[j] * ui or d < -(wr[i] * (1 - ui) + wr[j] * ui)
    values = {"off_track": float(off)}
    # course points
    cy, sy_ = math.cos(raw["yaw"]), math.sin(raw["yaw"])
    look = max(cfg["min_lookahead_m"], math.hypot(raw["vx"], raw["vy"]) * cfg["lookahead_time_s"])
    K = cfg["course_points"]

    def line_point(line, k):
        t = np.array([xs[(k + 1) % n] - xs[k - 1], ys[(k + 1) % n] - ys[k - 1]])
        nrm = np.array([-t[1], t[0]]) / np.hypot(*t)
        c = np.array([xs[k], ys[k]])
        return c + nrm * wl[k] if line == "left" else c if line == "centre" else c - nrm * wr[k]

    for line in ("left", "centre", "right"):
        for k in range(K):
            f = np.mod(s0 + k * look / K, n * ds) / ds
            a = int(f)
            w = f - a
            p = line_point(line, a) * (1 - w) + line_point(line, (a + 1) % n) * w
            dx, dy = p[0] - px, p[1] - py
            values[f"{line}_{k}_x"] = dx * cy + dy * sy_
            values[f"{line}_{k}_y"] = -dx * sy_ + dy * cy
    values.update({k: raw[k] for k in ("vx", "vy", "yaw_rate", "ax", "ay", "slip_front", "slip_rear", "load_front",
                                       "load_rear", "steer_angle", "prev_steer", "prev_throttle_brake",
                                       "wall_contact")})
    out = []
    for e in spec["observation"]["elements"]:
        scale = e["scale"] if isinstance(e["scale"], (int, float)) else named_scale[e["scale"]]
        out.append(values[e["name"]] / scale)
    return np.array(out)


def test_the_json_spec_alone_is_enough_to_build_the_observation(exported_builtin):
    """A game engine needs nothing but driver.json and its track: an independent numpy
    implementation of the documented formulas gives the environments' observation."""
    from envs.observation import build_observations

    spec = json.loads(exported_builtin.with_suffix(".json").read_text())
    _, sim = _record_observations(n_races=8, steps=150)
    want = build_observations(sim)
    F = sim.F
    names = dict(x=dy.F_X, y=dy.F_Y, yaw=dy.F_YAW, vx=dy.F_VX, vy=dy.F_VY, yaw_rate=dy.F_R, ax=dy.F_AX, ay=dy.F_AY,
                 slip_front=dy.F_ALPHAF, slip_rear=dy.F_ALPHAR, load_front=dy.F_FZF, load_rear=dy.F_FZR,
                 steer_angle=dy.F_STEER, prev_steer=dy.F_STEER_CMD, prev_throttle_brake=dy.F_THROTTLE_CMD)
    for c in range(sim.num_cars):
        raw = {k: float(F[i, c]) for k, i in names.items()}
        raw["wall_contact"] = float(sim.I[dy.I_WALL, c] != 0)
        got = _observation_from_spec(spec, sim.track_of(c), raw)
        np.testing.assert_allclose(got, want[c], rtol=1e-5, atol=2e-5, err_msg=f"car {c}")

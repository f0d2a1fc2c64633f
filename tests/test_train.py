"""Training without Ray (``--workers 0``): worker batches, the replay-buffer rules, the
loop's outputs, checkpoints, resume, and a trained run as a driver spec."""

import json
from pathlib import Path

import numpy as np
import pytest

from agents.config import TrainConfig, from_dict, to_dict
from racing.errors import ConfigError

E = 4  # races (learner cars) per worker
T = 16  # rollout steps per batch


def tiny(**over) -> TrainConfig:
    data = {
        "total_steps": 512,
        "log_every_steps": 128,
        "tracks": [{"track": "oval"}],
        "scenarios": [{"kind": "time_trial", "episode_s": 3.0}],
        "algorithm": {"net_arch": [32, 32], "batch_size": 32, "buffer_size": 4096, "learning_starts": 128,
                      "updates_per_step": 0.1, "n_steps": 3},
        "workers": {"count": 0, "races_per_worker": E, "rollout_steps": T, "sync_interval": 4},
        "checkpoint": {"every_steps": 128, "keep_last": 2},
        "evaluation": {"every_steps": 0},
    }
    return from_dict(TrainConfig, data).with_overrides(**{k.replace("__", "."): v for k, v in over.items()})


def make_worker(cfg, seed=0, weights=None):
    from agents.train import Learner
    from agents.workers import RolloutWorker

    w = RolloutWorker(to_dict(cfg), 0, seed)
    if weights is None:
        weights = Learner(cfg, w.E, w.D).actor_weights()
    w.set_weights((0, weights))
    return w


def near_deterministic_weights(cfg):
    """Actor weights whose action noise is negligible (log std at SB3's floor), so the
    same observations give the same actions whatever the RNG draws."""
    from agents.train import Learner

    lw = Learner(cfg, E, cfg.obs_config.dim).actor_weights()
    lw["log_std.weight"][:] = 0.0
    lw["log_std.bias"][:] = -20.0
    return lw


# ---------------------------------------------------------------- batches
def test_batches_are_typed_and_continuous():
    cfg = tiny()
    w = make_worker(cfg)
    b = w.rollout()
    D = cfg.obs_config.dim
    assert b.obs.shape == (T, E, D) and b.obs.dtype == np.float32
    assert b.next_obs.shape == (T, E, D) and b.actions.shape == (T, E, 2) and b.actions.dtype == np.float32
    assert b.rewards.shape == (T, E) and b.terminated.dtype == bool and b.truncated.dtype == bool
    assert b.policy_version.shape == (T, E) and (b.policy_version == 0).all()
    assert b.env_steps == T * E
    assert np.abs(b.actions).max() <= 1.0  # the policy's [-1, 1] space
    # a car's next observation is its following observation, unless the episode ended
    b2 = w.rollout()
    obs = np.concatenate([b.obs, b2.obs])
    nxt = np.concatenate([b.next_obs, b2.next_obs])
    ended = np.concatenate([b.terminated | b.truncated, b2.terminated | b2.truncated])
    cont = ~ended[:-1]
    assert np.array_equal(nxt[:-1][cont], obs[1:][cont])
    # 3 s episodes at 10 Hz: every car is truncated at step 30 (no true end so early)
    assert ended[:, 0].sum() == 1 and np.flatnonzero(ended[:, 0])[0] == 29
    assert np.concatenate([b.truncated, b2.truncated])[29].all()
    # the final observation is the true one, not the next episode's first
    assert not np.allclose(nxt[29], obs[30])
    eps = b2.episodes
    assert len(eps) == E and all(ep.length == 30 and not ep.terminated for ep in eps)
    assert set(eps[0].terms) == {"progress", "off_course", "wall", "tyre_slip"}
    assert sum(eps[0].terms.values()) == pytest.approx(eps[0].episode_return, rel=1e-5, abs=1e-4)


def test_worker_mixes_tracks_and_scenarios():
    """Races are split between scenarios, then tracks, by weight; each pair is one batched
    env; a narrower time-trial observation is zero-padded to a racing policy's width."""
    cfg = tiny(workers__races_per_worker=8,
               tracks=[{"track": "oval", "weight": 1}, {"track": "random", "weight": 1}],
               scenarios=[{"kind": "time_trial", "weight": 3, "episode_s": 3.0},
                          {"kind": "time_trial", "start": "grid", "weight": 1, "episode_s": 3.0}],
               observation={"num_opponents": 2})
    w = make_worker(cfg)
    segs = w.describe()["segments"]
    assert [(label, n) for label, n, _ in segs] == [("time_trial/oval", 3), ("time_trial/random", 3),
                                                    ("time_trial/oval", 1), ("time_trial/random", 1)]
    assert all(mode == "same_step" for *_, mode in segs)
    b = w.rollout()
    assert b.obs.shape == (T, 8, cfg.obs_config.dim)
    width = 14 + 6 * cfg.obs_config.course_points
    assert cfg.obs_config.dim == width + 2 * 2 * 5
    assert (b.obs[:, :, width:] == 0).all() and (b.next_obs[:, :, width:] == 0).all()
    # the random-track races run on procedurally generated circuits
    rand = w.segments[1].env
    assert rand.sim.track_of(0).name != "oval"


def test_race_scenarios_train_next_to_time_trials():
    """Race-v0 races (learner among scripted opponents) and time trials in one worker: the
    same observation width, every reward term of each scenario in the episode statistics."""
    cfg = tiny(scenarios=[{"kind": "time_trial", "episode_s": 3.0},
                          {"kind": "race", "opponents": 2, "start": "mid_race", "episode_s": 3.0}],
               observation={"num_opponents": 2})
    w = make_worker(cfg)
    assert [(label, n) for label, n, _ in w.describe()["segments"]] == [("time_trial/oval", 2), ("race/oval", 2)]
    w.rollout()
    b = w.rollout()
    width = 14 + 6 * cfg.obs_config.course_points
    assert (b.obs[:, :2, width:] == 0).all()  # no opponents in a time trial
    assert (b.obs[:, 2:, width] == 1).any()  # the nearest opponent's presence flag in a race
    terms = {ep.scenario: set(ep.terms) for ep in b.episodes}
    assert terms["time_trial/oval"] == {"progress", "off_course", "wall", "tyre_slip"}
    assert {"collision", "rear_end", "passing", "unsporting"} <= terms["race/oval"]


def _columns(worker, n_batches):
    bs = [worker.rollout() for _ in range(n_batches)]
    return {k: np.concatenate([getattr(b, k) for b in bs]) for k in ("obs", "next_obs", "actions", "rewards",
                                                                     "terminated", "truncated")}


def test_next_step_autoreset_drops_the_reset_step(monkeypatch):
    """With Gymnasium's NEXT_STEP autoreset the step after an episode end is a reset, not a
    transition: the worker drops it, so its batches equal those of SAME_STEP."""
    from gymnasium.vector import AutoresetMode

    import agents.workers as workers

    cfg = tiny()
    weights = near_deterministic_weights(cfg)
    same = _columns(make_worker(cfg, weights=weights), 5)

    real = workers.scenario_env_kwargs

    def next_step(*a, **k):
        env_id, kwargs = real(*a, **k)
        kwargs["autoreset_mode"] = AutoresetMode.NEXT_STEP
        return env_id, kwargs

    monkeypatch.setattr(workers, "scenario_env_kwargs", next_step)
    w = make_worker(cfg, weights=weights)
    assert not w.segments[0].same_step
    nxt = _columns(w, 5)
    assert (same["truncated"].sum(axis=0) >= 2).all()  # episode ends inside the compared window
    for k in same:
        assert np.allclose(same[k], nxt[k], atol=1e-5), k


# ---------------------------------------------------------------- replay buffer rules
def test_nstep_chains_stop_at_batch_boundaries():
    """Batches of different workers interleave in the buffer: an n-step return must never
    add rewards of the next batch (another car), and must bootstrap there."""
    from agents.train import Learner
    from agents.workers import TransitionBatch

    cfg = tiny()
    D = cfg.obs_config.dim
    lr = Learner(cfg, E, D)
    rng = np.random.default_rng(0)

    def batch(reward, term_row=None):
        term = np.zeros((T, E), bool)
        if term_row is not None:
            term[term_row, 0] = True
        return TransitionBatch(rng.normal(size=(T, E, D)).astype(np.float32),
                               rng.normal(size=(T, E, D)).astype(np.float32),
                               rng.uniform(-1, 1, (T, E, 2)).astype(np.float32),
                               np.full((T, E), reward, np.float32), term, np.zeros((T, E), bool),
                               np.zeros((T, E), np.int64), 0, (), ())

    lr.add_batch(batch(1.0, term_row=5))
    lr.add_batch(batch(100.0))
    rb = lr.model.replay_buffer
    assert rb.timeouts[T - 1].all() and not rb.dones[T - 1].any()  # cut, but not terminal
    assert rb.dones[5, 0] == 1 and rb.timeouts[5, 0] == 0  # a true end stays terminal
    gamma, n = cfg.algorithm.gamma, cfg.algorithm.n_steps
    s = rb._get_samples(np.repeat(np.arange(T), 50))
    r = s.rewards.numpy().ravel()
    assert r.max() <= sum(gamma ** k for k in range(n)) + 1e-4  # never a reward of 100
    # the last row of the first batch: one reward, bootstrapped (done 0) with discount gamma
    last = rb._get_samples(np.full(20, T - 1))
    assert np.allclose(last.rewards.numpy(), 1.0) and np.allclose(last.dones.numpy(), 0.0)
    assert np.allclose(last.discounts.numpy(), gamma)
    # env steps are counted over all cars
    assert lr.env_steps == 2 * T * E


# ---------------------------------------------------------------- the loop
def _rows(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _tb_steps(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tb"))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from agents.train import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = tiny(evaluation={"every_steps": 256, "tracks": ["oval"], "laps": 1})
    summary = train(cfg, run, progress=False, log=lambda _: None)
    return run, summary


def test_train_writes_a_run_directory(trained):
    run, summary = trained
    for name in ("config.yaml", "driver.pt", "metrics.jsonl", "summary.json"):
        assert (run / name).is_file(), name
    assert list((run / "tb").iterdir())
    # steps are environment steps summed over all cars: whole batches of T x E
    assert summary["env_steps"] >= 512 and summary["env_steps"] % (T * E) == 0
    assert summary["grad_steps"] > 0 and summary["weights_version"] > 0
    rows = _rows(run)
    keys = set().union(*rows)
    for k in ("losses/actor_loss", "losses/critic_loss", "losses/ent_coef", "charts/episode_return",
              "rewards/progress", "rewards/off_course", "rewards/wall", "rewards/tyre_slip",
              "perf/env_steps_per_s", "perf/grad_steps_per_s", "perf/weights_lag", "workers/alive",
              "workers/restarts"):
        assert k in keys, k
    assert [r["env_steps"] for r in rows] == sorted(r["env_steps"] for r in rows)
    assert _tb_steps(run, "perf/env_steps_per_s") == [r["env_steps"] for r in rows if "perf/env_steps_per_s" in r]
    # periodic evaluation with racing eval's code path: JSON and eval/ scalars
    evals = sorted((run / "eval").glob("step_*.json"))
    assert [int(p.stem.split("_")[1]) for p in evals] == [256, summary["env_steps"]]
    res = json.loads(evals[-1].read_text())
    assert res["env_steps"] == summary["env_steps"] and res["results"]["oval"]["driver"] == str(run / "driver.pt")
    assert "reference_lap_s" in res["results"]["oval"]
    eval_rows = [r for r in rows if "eval/completed_laps" in r]
    assert [r["env_steps"] for r in eval_rows] == [256, summary["env_steps"]]
    assert _tb_steps(run, "eval/completed_laps") == [256, summary["env_steps"]]


def test_checkpoints_keep_last_k_and_hold_the_state(trained):
    from agents.checkpoint import list_checkpoints, load_state

    run, summary = trained
    ckpts = list_checkpoints(run)
    assert len(ckpts) == 2  # keep_last
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp files left
    state = load_state(ckpts[-1])
    assert state["env_steps"] == summary["env_steps"] and state["grad_steps"] == summary["grad_steps"]
    for k in ("policy", "actor_optimizer", "critic_optimizer", "log_ent_coef", "ent_coef_optimizer", "config",
              "driver"):
        assert state[k] is not None, k
    assert state["config"]["workers"]["races_per_worker"] == E


def test_atomic_save_survives_a_crash(tmp_path, monkeypatch):
    import torch

    from agents.checkpoint import list_checkpoints, load_state, save_checkpoint

    for step in (1, 2, 3):
        save_checkpoint(tmp_path, {"format": "racing-checkpoint", "step": step}, step, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000000000002.pt", "ckpt_000000000003.pt"]

    def dying_save(obj, fh):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, {"format": "racing-checkpoint", "step": 4}, 4, keep_last=2)
    monkeypatch.undo()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["ckpt_000000000002.pt", "ckpt_000000000003.pt"]  # nothing partial, nothing lost
    assert load_state(list_checkpoints(tmp_path)[-1])["step"] == 3


def test_resume_continues_steps_and_the_tensorboard_run(trained, tmp_path):
    import shutil

    from agents.checkpoint import latest_checkpoint, load_state
    from agents.train import train

    run0, summary0 = trained
    run = tmp_path / "run"
    shutil.copytree(run0, run)
    state0 = load_state(latest_checkpoint(run))
    s = train(None, run, resume=True, total_steps=1024, progress=False, log=lambda _: None)
    assert s["env_steps"] >= 1024 and s["env_steps"] % (T * E) == 0
    assert s["grad_steps"] > summary0["grad_steps"]
    rows = _rows(run)
    steps = [r["env_steps"] for r in rows if "perf/env_steps_per_s" in r]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert min(steps) < summary0["env_steps"] < max(steps)
    tb = _tb_steps(run, "perf/env_steps_per_s")
    assert tb == steps  # one curve in the same TensorBoard directory
    state1 = load_state(latest_checkpoint(run))
    assert state1["env_steps"] == s["env_steps"]
    assert state1["stats"]["sessions"] == 2
    # the optimisers continued (Adam's step count grew) rather than restarting
    step0 = state0["critic_optimizer"]["state"][0]["step"]
    step1 = state1["critic_optimizer"]["state"][0]["step"]
    assert float(step1) > float(step0) > 0


def test_resume_restores_networks_exactly(trained):
    import torch

    from agents.checkpoint import latest_checkpoint, load_state
    from agents.train import Learner

    run, _ = trained
    state = load_state(latest_checkpoint(run))
    cfg = from_dict(TrainConfig, state["config"])
    lr = Learner(cfg, state["n_envs"], state["obs_dim"])
    lr.load_state_dict(state)
    for k, v in lr.model.policy.state_dict().items():
        assert torch.equal(v, state["policy"][k]), k
    assert float(lr.model.log_ent_coef.detach()) == float(state["log_ent_coef"])
    assert lr.env_steps == state["env_steps"] and lr.grad_steps == state["grad_steps"]


def test_replay_buffer_in_checkpoint(tmp_path):
    from agents.checkpoint import latest_checkpoint, load_state
    from agents.train import Learner, train

    run = tmp_path / "rb"
    train(tiny(checkpoint__replay_buffer=True, total_steps=256), run, progress=False, log=lambda _: None)
    state = load_state(latest_checkpoint(run))
    assert state["replay_buffer"] is not None
    cfg = from_dict(TrainConfig, state["config"])
    lr = Learner(cfg, E, cfg.obs_config.dim)
    lr.load_state_dict(state)
    assert lr.buffer_transitions == 256


# ---------------------------------------------------------------- a run as a driver
def test_run_directory_is_a_driver_spec(trained):
    import torch

    from agents.drivers import make_driver
    from agents.policy import PolicyDriver
    from envs.observation import build_observations
    from racing.sim import RaceSim
    from racing.trackio import load_track

    run, _ = trained
    for spec in (str(run), str(run / "driver.pt"), f"checkpoint:{run}",
                 str(sorted((run / "checkpoints").iterdir())[-1])):
        assert isinstance(make_driver(spec), PolicyDriver), spec
    driver = make_driver(str(run))
    sim = RaceSim(load_track("oval"), "gt3", num_races=2, cars_per_race=2)
    cars = np.arange(sim.num_cars)
    driver.reset(sim, cars, seed=0)
    u = driver.act(sim, cars)
    assert u.shape == (4, 2) and np.isfinite(u).all() and np.abs(u).max() <= 1.0
    # deterministic: the tanh of the actor's mean, as the learner's own actor gives it
    from agents.checkpoint import load_state

    rec = load_state(run / "driver.pt")
    from agents.policy import build_actor

    actor = build_actor(rec["algorithm"], rec["obs_dim"], rec["net_arch"], rec["activation"])
    actor.load_state_dict(rec["actor"])
    obs = build_observations(sim, cars, driver.obs_config)
    with torch.no_grad():
        ref = actor(torch.as_tensor(obs), deterministic=True).numpy()
    assert np.allclose(u, ref, atol=1e-6)
    assert np.array_equal(u, driver.act(sim, cars))
    for _ in range(20):
        sim.step(driver.act(sim, cars))
    assert np.isfinite(sim.x).all()


def test_racing_eval_drives_a_run_directory(trained, capsys):
    run, _ = trained
    assert _racing("eval", "--driver", str(run), "--track", "oval", "--laps", "1", "--no-progress",
                   "--json", "-") == 0
    res = json.loads(capsys.readouterr().out)
    assert res["driver"] == str(run) and res["track"] == "oval"


def test_tqc_learner_trains_and_drives(tmp_path):
    """sb3-contrib TQC (quantile critics, the public analogue of GT Sophy's QR-SAC)."""
    from agents.checkpoint import latest_checkpoint, load_state
    from agents.drivers import make_driver
    from agents.train import train
    from racing.sim import RaceSim
    from racing.trackio import load_track

    cfg = tiny(total_steps=256, algorithm={"name": "tqc", "net_arch": [32, 32], "batch_size": 32,
                                           "buffer_size": 4096, "learning_starts": 128, "updates_per_step": 0.1,
                                           "n_quantiles": 5, "top_quantiles_to_drop_per_net": 1})
    s = train(cfg, tmp_path / "tqc", progress=False, log=lambda _: None)
    assert s["grad_steps"] > 0
    state = load_state(latest_checkpoint(tmp_path / "tqc"))
    assert state["driver"]["algorithm"] == "tqc"
    assert tuple(state["policy"]["critic.qf1.4.bias"].shape) == (5,)  # one output per quantile
    sim = RaceSim(load_track("oval"), "gt3", num_races=1, cars_per_race=1)
    u = make_driver(str(tmp_path / "tqc")).act(sim, [0])
    assert u.shape == (1, 2) and np.abs(u).max() <= 1.0


def test_bad_driver_paths(tmp_path):
    from agents.drivers import make_driver

    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="directory without"):
        make_driver(str(tmp_path / "empty"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        make_driver(str(junk))


# ---------------------------------------------------------------- command line
def _racing(*argv):
    from racing.cli import main

    return main(list(argv))


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers: {count: 0, races: 4}\n")
    assert _racing("train", "--config", str(bad), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert "workers.races" in err and "races_per_worker" in err and len(err.splitlines()) == 1
    assert _racing("train") == 2
    assert "--config is required" in capsys.readouterr().err
    assert _racing("train", "--resume", str(tmp_path), "--config", str(bad)) == 2
    assert "cannot be combined with --resume" in capsys.readouterr().err
    assert _racing("train", "--resume", str(tmp_path)) == 2
    assert "no checkpoints" in capsys.readouterr().err


def test_unregistered_scenario_env_is_refused_before_starting(tmp_path, monkeypatch):
    import agents.workers as workers
    from agents.train import train

    monkeypatch.setitem(workers.ENV_IDS, "race", "racing/NotRegistered-v0")
    cfg = tiny(scenarios=[{"kind": "race", "opponents": 1}], observation={"num_opponents": 1})
    with pytest.raises(ConfigError, match="not available yet"):
        train(cfg, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("over, words", [
    ({"tracks": [{"track": "nosuch"}]}, ["tracks[0].track", "nosuch"]),
    ({"evaluation": {"tracks": ["missing.csv"]}}, ["evaluation.tracks[0]", "missing.csv"]),
    ({"vehicle": "kart"}, ["vehicle", "kart"]),
])
def test_bad_track_or_vehicle_fails_before_starting(tmp_path, over, words):
    from agents.train import train

    with pytest.raises(ConfigError) as info:
        train(tiny(**over), tmp_path / "r", progress=False)
    for w in words:
        assert w in str(info.value)
    assert not (tmp_path / "r").exists()


def test_cli_trains_and_refuses_to_overwrite(tmp_path, capsys):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(to_dict(tiny(total_steps=128))))
    out = tmp_path / "run"
    assert _racing("train", "--config", str(cfg), "--out", str(out), "--steps", "192", "--seed", "3",
                   "--no-progress") == 0
    text = capsys.readouterr().out
    assert "trained 192 environment steps" in text
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 3
    assert _racing("train", "--config", str(cfg), "--out", str(out), "--no-progress") == 2
    assert "--resume" in capsys.readouterr().err


def test_sigkill_loses_at_most_one_checkpoint_interval(tmp_path):
    """Kill the training process outright; ``--resume`` continues from the last checkpoint
    (one interval lost at most) as the same curve."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from agents.checkpoint import list_checkpoints

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(to_dict(tiny(total_steps=10_000_000))))
    out = tmp_path / "run"
    racing = str(Path(sys.executable).parent / "racing")
    proc = subprocess.Popen([racing, "train", "--config", str(cfg), "--out", str(out), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list_checkpoints(out)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    ckpts = list_checkpoints(out)
    assert ckpts, "no checkpoint before the kill"
    saved = int(ckpts[-1].stem.split("_")[1])
    assert saved % 128 == 0 and saved >= 128  # checkpoint.every_steps of tiny()
    from agents.train import train

    s = train(None, out, resume=True, total_steps=saved + 256, progress=False, log=lambda _: None)
    assert s["env_steps"] == saved + 256
    steps = [r["env_steps"] for r in _rows(out) if "perf/env_steps_per_s" in r]
    assert steps == sorted(set(steps)) and steps[-1] == saved + 256
    tb = _tb_steps(out, "perf/env_steps_per_s")
    assert tb == steps, (saved, tb, steps, sorted(p.name for p in (out / "tb").iterdir()))

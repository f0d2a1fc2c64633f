"""``racing bench --training``: our trainer against plain ``SAC.learn()`` of Stable-Baselines3.

Two measurements, in one run on this machine:

1. **Throughput**: environment steps/s and gradient steps/s of our trainer
   (:func:`agents.train.train` on ``configs/quickstart.yaml``) with 0 (in-process), 1 and 2
   Ray rollout workers, and of ``SAC.learn()`` on one ``racing/TimeTrial-v0`` (club, same
   network, same update-to-data ratio: one gradient step per ``1 / updates_per_step``
   environment steps). Rates are measured over a window that starts once learning has begun
   (after ``learning_starts``), so start-up (Ray, JIT compilation) does not count.
2. **Time to the first clean lap** on the club circuit: wall-clock seconds from the start of
   training (set-up included for both: Ray, workers, environments, networks) until a valid
   lap is completed, for our trainer (``quickstart.yaml`` as shipped)
   and for ``SAC.learn()`` with SB3's default settings on the same environment. Each run is
   capped at ``cap_s``; a run that reaches no clean lap reports ``null`` and the ratio is then
   a lower bound (``>=``).
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


class _Stop(Exception):
    """Raised from a training callback to end a measurement run."""


def _rates(samples, t_from: float):
    """(env steps/s, grad steps/s) over the samples (time, env_steps, grad_steps) after t_from."""
    pts = [p for p in samples if p[0] >= t_from]
    if len(pts) < 2 or pts[-1][0] - pts[0][0] <= 0:
        return None, None
    dt = pts[-1][0] - pts[0][0]
    return (pts[-1][1] - pts[0][1]) / dt, (pts[-1][2] - pts[0][2]) / dt


def ours(workers: int, *, window_s: float, first_lap: bool = False, cap_s: float = 600.0, log=None) -> dict:
    """Run our trainer on quickstart.yaml; throughput over ``window_s`` once training has
    started, or (``first_lap``) the wall time to the first valid lap."""
    from agents.config import load_config
    from agents.train import train

    cfg = load_config(QUICKSTART)
    samples = []
    first: dict = {}
    t0 = time.perf_counter()
    state = {"t_learn": None}

    def on_batch(pool, learner):
        now = time.perf_counter()
        samples.append((now, learner.env_steps, learner.grad_steps))
        if state["t_learn"] is None and learner.grad_steps > 0:
            state["t_learn"] = now
        if first_lap:
            if "t" in first or now - t0 > cap_s:
                raise _Stop
        elif state["t_learn"] is not None and now - state["t_learn"] > window_s:
            raise _Stop

    def on_log(line: str):
        if line.startswith("first valid lap") and "t" not in first:
            first["t"] = time.perf_counter()
            first["line"] = line
        if log is not None:
            log(line)

    with tempfile.TemporaryDirectory() as tmp:
        try:
            train(cfg, Path(tmp) / "run", workers=workers, total_steps=10**9, progress=False, log=on_log,
                  on_batch=on_batch)
        except _Stop:
            pass
    out = {"trainer": "racing train (quickstart.yaml)", "workers": workers}
    if first_lap:
        out["first_clean_lap_s"] = round(first["t"] - t0, 1) if "t" in first else None
        out["cap_s"] = cap_s
    else:
        env_rate, grad_rate = _rates(samples, state["t_learn"] or math.inf)
        out["env_steps_per_s"] = None if env_rate is None else round(env_rate, 1)
        out["grad_steps_per_s"] = None if grad_rate is None else round(grad_rate, 1)
    return out


def plain_sac(*, window_s: float = 30.0, first_lap: bool = False, cap_s: float = 600.0, defaults: bool = False) -> dict:
    """``SAC.learn()`` on one ``racing/TimeTrial-v0`` (club, random rolling starts).

    ``defaults``: SB3's default SAC settings; otherwise quickstart.yaml's network, learning
    rate, batch size and update-to-data ratio (one gradient step every 8 environment steps).
    """
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    import envs  # noqa: F401
    from agents.config import load_config

    torch.set_num_threads(1)
    cfg = load_config(QUICKSTART)
    al = cfg.algorithm
    t0 = time.perf_counter()  # set-up counts, as it does for our trainer (Ray, workers, learner)
    env = gym.make("racing/TimeTrial-v0", track="club", start="random", max_episode_steps=1500)
    if defaults:
        model = SAC("MlpPolicy", env, seed=0, verbose=0)
    else:
        every = max(1, int(round(1.0 / al.updates_per_step)))
        model = SAC("MlpPolicy", env, seed=0, verbose=0, learning_rate=al.learning_rate, batch_size=al.batch_size,
                    buffer_size=al.buffer_size, gamma=al.gamma, tau=al.tau, learning_starts=al.learning_starts,
                    train_freq=every, gradient_steps=1, policy_kwargs={"net_arch": list(al.net_arch)})
    samples = []
    first: dict = {}

    class Probe(BaseCallback):
        def _on_step(self) -> bool:
            now = time.perf_counter()
            samples.append((now, self.num_timesteps, self.model._n_updates))
            for info in self.locals.get("infos", []):
                rec = info.get("lap_record")
                if rec is not None and rec.get("valid") and "t" not in first:
                    first["t"] = now
            if first_lap:
                return "t" not in first and now - t0 < cap_s
            learn_from = next((p[0] for p in samples if p[2] > 0), None)
            return learn_from is None or now - learn_from < window_s

    model.learn(total_timesteps=10**9, callback=Probe())
    env.close()
    out = {"trainer": "SB3 SAC.learn()" + (" (default settings)" if defaults else " (quickstart network and ratio)")}
    if first_lap:
        out["first_clean_lap_s"] = round(first["t"] - t0, 1) if "t" in first else None
        out["cap_s"] = cap_s
    else:
        learn_from = next((p[0] for p in samples if p[2] > 0), math.inf)
        env_rate, grad_rate = _rates(samples, learn_from)
        out["env_steps_per_s"] = None if env_rate is None else round(env_rate, 1)
        out["grad_steps_per_s"] = None if grad_rate is None else round(grad_rate, 1)
    return out


def run_training_bench(*, window_s: float = 40.0, cap_s: float = 600.0, progress=sys.stderr) -> dict:
    def say(msg):
        if progress is not None:
            print(msg, file=progress, flush=True)

    report = {"throughput": [], "first_clean_lap": []}
    for w in (0, 1, 2):
        say(f"[training] our trainer, {w} workers: {window_s:g} s window ...")
        report["throughput"].append(ours(w, window_s=window_s))
    say(f"[training] SAC.learn(): {window_s:g} s window ...")
    report["throughput"].append(plain_sac(window_s=window_s))
    say(f"[training] our trainer to the first clean lap (cap {cap_s:g} s) ...")
    report["first_clean_lap"].append(ours(1, window_s=window_s, first_lap=True, cap_s=cap_s))
    say(f"[training] SAC.learn() with default settings to the first clean lap (cap {cap_s:g} s) ...")
    report["first_clean_lap"].append(plain_sac(first_lap=True, cap_s=cap_s, defaults=True))
    base = report["throughput"][-1]
    for row in report["throughput"][:-1]:
        for key in ("env_steps_per_s", "grad_steps_per_s"):
            if row[key] and base[key]:
                row[key.replace("_per_s", "_ratio_vs_sac_learn")] = round(row[key] / base[key], 2)
    ours_t, sac_t = (r["first_clean_lap_s"] for r in report["first_clean_lap"])
    if ours_t is None:
        report["first_clean_lap_speedup"] = None
    elif sac_t is None:
        report["first_clean_lap_speedup"] = f">= {cap_s / ours_t:.1f}"
    else:
        report["first_clean_lap_speedup"] = round(sac_t / ours_t, 2)
    return report


def format_training_table(report: dict) -> str:
    lines = [f"{'trainer':<48} {'workers':>7} {'env steps/s':>12} {'grad steps/s':>13}", "-" * 84]
    for r in report["throughput"]:
        lines.append(f"{r['trainer']:<48} {str(r.get('workers', '-')):>7} {r['env_steps_per_s'] or '-':>12} "
                     f"{r['grad_steps_per_s'] or '-':>13}")
    lines.append("")
    for r in report["first_clean_lap"]:
        t = r["first_clean_lap_s"]
        lines.append(f"first clean lap, club: {r['trainer']:<48} "
                     + (f"{t:.0f} s" if t is not None else f"none within {r['cap_s']:.0f} s"))
    lines.append(f"speed-up to the first clean lap: {report['first_clean_lap_speedup']} (target >= 3)")
    return "\n".join(lines)

"""Training with real Ray actors: a killed rollout worker is restarted and training reaches
its step count; ``--address`` joins a cluster started with ``ray start --head``."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agents.config import to_dict
from tests.test_train import E, T, tiny

pytest.importorskip("ray")

VENV_BIN = Path(sys.executable).parent


def test_killed_worker_is_restarted_and_training_completes(tmp_path):
    from agents.train import train

    killed = []
    lines = []

    def kill_once(pool, learner):
        # after two batches, SIGKILL the worker process (as the OOM killer or a lost node would)
        if not killed and learner.env_steps >= 2 * T * E:
            pid = pool.worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    cfg = tiny(workers__count=1, total_steps=8 * T * E)
    s = train(cfg, tmp_path / "run", progress=False, log=lines.append, on_batch=kill_once)
    assert killed
    assert s["env_steps"] >= 8 * T * E and s["worker_restarts"] == 1
    assert any("rollout worker 0 died" in line and "restarting" in line for line in lines), lines
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["workers/restarts"] == 1 and rows[-1]["workers/alive"] == 1
    assert max(r["charts/weights_version"] for r in rows) > 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_train_joins_an_existing_cluster(tmp_path):
    """``ray start --head`` on loopback, then ``racing train --address`` against it."""
    port = _free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=1", "--object-store-memory=100000000", "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        cfg_path = tmp_path / "c.yaml"
        cfg_path.write_text(yaml.safe_dump(to_dict(tiny(total_steps=4 * T * E))))
        out = tmp_path / "run"
        deadline = time.time() + 240
        proc = None
        while time.time() < deadline:  # the head takes a few seconds to come up
            proc = subprocess.run(
                [str(VENV_BIN / "racing"), "train", "--config", str(cfg_path), "--out", str(out), "--workers", "1",
                 "--address", f"127.0.0.1:{port}", "--no-progress"],
                env=env, capture_output=True, text=True, timeout=240)
            if proc.returncode == 0 or "could not join" not in proc.stderr:
                break
            time.sleep(2)
        assert proc is not None and proc.returncode == 0, proc.stderr[-3000:]
        assert f"Ray cluster at 127.0.0.1:{port}" in proc.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["env_steps"] >= 4 * T * E and summary["workers"] == 1
    finally:
        # stop only this head (``ray stop`` would stop every Ray instance on the machine)
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)

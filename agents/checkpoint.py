"""Checkpoints of a training run: explicit dicts written atomically, the last K kept.

A checkpoint is one ``torch.save`` file ``<run>/checkpoints/ckpt_<env_steps>.pt`` holding a
plain dict (see :func:`agents.train.Learner.state_dict`): the networks and optimisers, the
entropy coefficient, the step counters, the resolved config, the policy (``driver``)
record, and optionally the replay buffer. It is written to a temporary file in the same
directory, flushed to disk and renamed over the final name (``os.replace`` is atomic), so a
process killed at any moment leaves either the previous set of checkpoints or the new one,
never a truncated file. Loading rebuilds the objects from the stored config.

A *driver file* (``<run>/driver.pt``) holds only the ``driver`` record: what
:mod:`agents.policy` needs to drive (actor weights, network shape, observation settings).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from racing.errors import ConfigError

CHECKPOINT_DIR = "checkpoints"
DRIVER_FILE = "driver.pt"
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj, path) -> Path:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def checkpoint_path(run_dir, env_steps: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt_{int(env_steps):012d}.pt"


def list_checkpoints(run_dir) -> list[Path]:
    """Checkpoints of a run, oldest first (by environment steps)."""
    d = Path(run_dir) / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(run_dir, state: dict, env_steps: int, keep_last: int) -> Path:
    """Write ``state`` as the checkpoint at ``env_steps`` and delete all but the newest
    ``keep_last`` checkpoints. Returns the new file."""
    if keep_last < 1:
        raise ConfigError(f"keep_last must be >= 1, got {keep_last}")
    path = atomic_torch_save(state, checkpoint_path(run_dir, env_steps))
    for old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def load_state(path) -> dict:
    """Load a checkpoint or driver file (tensors on the CPU). Only plain data is accepted
    (``weights_only``): a file cannot run code when loaded."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # corrupt or foreign file
        raise ConfigError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") not in ("racing-checkpoint", "racing-driver"):
        raise ConfigError(f"{path}: not a racing checkpoint or driver file")
    return state


def resolve_driver_file(spec) -> Path:
    """The file a driver spec path names: a checkpoint or driver file as is; for a run
    directory its ``driver.pt`` or, failing that, its latest checkpoint."""
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        if (p / DRIVER_FILE).is_file():
            return p / DRIVER_FILE
        latest = latest_checkpoint(p)
        if latest is not None:
            return latest
        raise ConfigError(f"{spec}: a directory without {DRIVER_FILE} or {CHECKPOINT_DIR}/ckpt_*.pt; "
                          f"give a training run directory or a checkpoint file")
    raise ConfigError(f"checkpoint not found: {spec}")

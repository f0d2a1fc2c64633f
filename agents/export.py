"""``racing export``: a trained driver as ONNX plus a JSON spec a game engine can build on.

``racing export --driver D --out driver.onnx`` writes

* ``driver.onnx``: the deterministic actor, observation rows ``obs`` ``(batch, obs_dim)``
  float32 in, actions ``action`` ``(batch, 2)`` float32 out (the Gaussian mean squashed by
  tanh, so in [-1, 1]); the batch axis is dynamic;
* ``driver.json`` (same stem): the observation spec (every element: index, name, unit,
  normalisation scale, how it is computed), the action spec, the control rate, the vehicle
  the driver was trained with (all parameters), the project version, the training run it
  came from and SHA-256 digests of the source and of the ONNX file.

``D`` is any driver spec that names a trained policy: ``builtin``, a training run
directory, a checkpoint or a ``driver.pt``. :func:`export_driver` is the library call.
:class:`agents.runtime.Driver` loads the pair without torch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from racing.errors import ConfigError

OPSET = 18
INPUT_NAME = "obs"
OUTPUT_NAME = "action"


def project_version() -> str:
    try:
        from importlib.metadata import version

        return version("racing-rl")
    except Exception:  # running from a source tree without an install
        return "unknown"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_record(spec: str) -> tuple[dict, Path]:
    """The driver record (see :mod:`agents.policy`) and the file it came from, for a driver
    spec naming a trained policy."""
    from agents.checkpoint import resolve_driver_file
    from agents.drivers import BUILTIN_DRIVER
    from agents.policy import load_record as policy_record

    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("--driver is required: builtin, a training run directory, a checkpoint or a driver.pt")
    if spec == "builtin":
        path = BUILTIN_DRIVER
    elif spec.startswith("checkpoint:"):
        path = resolve_driver_file(spec.partition(":")[2])
    elif ":" in spec and not Path(spec).expanduser().exists():
        raise ConfigError(f"'{spec}' is not a trained policy; export takes builtin, a training run directory, "
                          f"a checkpoint or a driver.pt")
    else:
        path = resolve_driver_file(spec)
    return policy_record(path), Path(path)


def deterministic_actor(record: dict):
    """A torch module ``obs -> tanh(mean action)`` with the record's weights (CPU, eval)."""
    import torch

    from agents.policy import ActorRunner

    runner = ActorRunner(record["algorithm"], record["obs_dim"], record["net_arch"], record["activation"])
    runner.load(record["actor"], record.get("version", 0))
    actor = runner.actor

    class DeterministicActor(torch.nn.Module):
        def __init__(self, actor):
            super().__init__()
            self.actor = actor

        def forward(self, obs):
            a = self.actor
            features = a.extract_features(obs, a.features_extractor)
            return torch.tanh(a.mu(a.latent_pi(features)))

    return DeterministicActor(actor).eval()


def action_spec() -> list[dict]:
    return [
        dict(index=0, name="steer", low=-1.0, high=1.0,
             description="steering command: the road-wheel angle moves towards steer x max_steer_rad (vehicle) "
                         "at most at max_steer_rate_radps; positive turns left"),
        dict(index=1, name="throttle_brake", low=-1.0, high=1.0,
             description="positive: throttle fraction of the drive force min(max_drive_force_n, max_power_w / vx); "
                         "negative: brake pedal fraction of max_brake_force_n (ABS and brake-force distribution "
                         "as in the vehicle parameters)"),
    ]


def observation_notes(cfg) -> dict:
    """How a game builds the observation itself (the JSON's ``observation.how``)."""
    return {
        "frames": "World frame: x, y in metres, yaw counter-clockwise from the x axis. Car frame: x forward, y left. "
                  "A world vector (dx, dy) in the car frame is (dx cos(yaw) + dy sin(yaw), -dx sin(yaw) + dy cos(yaw)).",
        "normalisation": "Every element is the raw quantity divided by its 'scale'; a string scale names a vehicle "
                         "quantity (m*g: mass_kg x 9.81; max_steer_rad). No clipping.",
        "projection": "The track is a closed polyline of centreline samples i = 0..n-1 spaced ds metres along the "
                      "centreline, each with a left and right width. The car's foot point is the closest point on "
                      "the polyline: segment i (sample i to i+1, wrapping), fraction u in [0, 1) along it; then "
                      "s = (i + u) ds, the lateral offset d = cross(segment, car - sample i) / |segment| (left "
                      "positive), and off_track is 1 when d > the left width or d < -the right width, widths linear "
                      "in u between samples i and i+1.",
        "course_points": f"Look-ahead L = max({cfg.min_lookahead_m} m, speed x {cfg.lookahead_time_s} s) with "
                         f"speed = hypot(vx, vy); point k (0..{cfg.course_points - 1}) is at arc length "
                         f"s + k L / {cfg.course_points} (wrapped to the lap length n ds); with f = that / ds, "
                         "i = floor(f), u = f - i, the point is linear in u between its line's points at samples i "
                         "and i+1. A line's point at sample i: the centreline sample, or it plus (left edge) / minus "
                         "(right edge) the unit left normal times the left / right width, the normal being the "
                         "sample's tangent (sample i+1 minus sample i-1) turned 90 degrees to the left. Points are "
                         "given in the car frame; lines follow one another: all left-edge points (x, y pairs), then "
                         "the centreline, then the right edge.",
        "opponents": ("none" if cfg.num_opponents == 0 else
                      f"The {cfg.num_opponents} nearest other cars ahead (track gap in [0, {cfg.opponent_range_ahead_m}] m) "
                      f"then behind (gap in [-{cfg.opponent_range_behind_m}, 0) m), nearest first; gap = wrap-aware "
                      "difference of s. Slot: present, relative position and relative world velocity in the car frame; "
                      "empty slots are zeros."),
        "loads_and_slip": "slip_front = atan2(vy + lf yaw_rate, max(|vx|, 0.5)) - steer_angle sign(vx); slip_rear = "
                          "atan2(vy - lr yaw_rate, max(|vx|, 0.5)); axle loads = static share m g lr/L (front), "
                          "m g lf/L (rear) + downforce 0.5 rho v^2 ClA split by aero_balance_front -/+ m ax h / L, "
                          "at least 0.05 m g (L = lf + lr).",
        "reference_implementation": "envs.observation.build_observations (numba); agents.runtime.Driver.observe builds "
                                    "it from raw car states.",
    }


def build_spec(record: dict, source: Path, cfg) -> dict:
    from envs.observation import observation_spec
    from racing.sim import SimConfig
    from racing.vehicle import load_vehicle

    vehicle = load_vehicle(record.get("vehicle") or "gt3")
    sim = SimConfig()
    elements = [dict(index=i, **e) for i, e in enumerate(observation_spec(cfg))]
    return {
        "format": "racing-onnx-driver",
        "format_version": 1,
        "project": {"name": "racing-rl", "version": project_version()},
        "onnx": {"file": None, "input": INPUT_NAME, "output": OUTPUT_NAME, "opset": OPSET, "dtype": "float32",
                 "input_shape": ["batch", cfg.dim], "output_shape": ["batch", 2]},
        "policy": {"algorithm": record["algorithm"], "net_arch": list(record["net_arch"]),
                   "activation": record["activation"], "deterministic": True,
                   "output": "tanh of the Gaussian mean: the deterministic action, in [-1, 1]"},
        "observation": {"dim": cfg.dim, "config": asdict(cfg), "elements": elements, "how": observation_notes(cfg)},
        "action": {"dim": 2, "elements": action_spec()},
        "control": {"control_hz": sim.control_hz, "physics_hz": sim.physics_hz,
                    "note": "one action per control step, held for all physics steps of it"},
        "vehicle": {"name": vehicle.name, "params": asdict(vehicle)},
        "training": {"source_file": str(source), "source_sha256": _sha256(source),
                     "run": record.get("source") or str(source.parent.parent if source.parent.name == "checkpoints"
                                                        else source.parent),
                     "env_steps": int(record.get("env_steps", 0)), "weights_version": int(record.get("version", 0))},
    }


def export_driver(spec: str, out, *, check: bool = True) -> tuple[Path, Path]:
    """Write ``out`` (``.onnx``) and its ``.json`` spec for the policy named by ``spec``.
    With ``check`` the ONNX output is compared with the torch actor on random observations
    (a :class:`ConfigError` if they differ by more than 1e-5). Returns both paths."""
    import torch

    from agents.policy import set_torch_threads
    from envs.observation import ObsConfig

    out = Path(out).expanduser()
    if out.suffix != ".onnx":
        raise ConfigError(f"--out must end in .onnx, got {out}")
    if not out.parent.is_dir():
        raise ConfigError(f"--out: directory {out.parent} does not exist")
    record, source = load_record(spec)
    cfg = ObsConfig(**record["observation"])
    if cfg.dim != int(record["obs_dim"]):
        raise ConfigError(f"{source}: observation settings give {cfg.dim} inputs but the network expects "
                          f"{record['obs_dim']}")
    set_torch_threads(1)
    model = deterministic_actor(record)
    example = torch.zeros(2, cfg.dim)
    # the exporter logs about optional packages (torchvision) and deprecations: not the user's concern
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes={"obs": {0: torch.export.Dim("batch", min=1)}}, dynamo=True,
                                        opset_version=OPSET, external_data=False, verbose=False, optimize=True)
    finally:
        quiet.setLevel(level)
    spec_dict = build_spec(record, source, cfg)
    spec_dict["onnx"]["file"] = out.name
    json_path = out.with_suffix(".json")
    tmp_onnx = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp_json = json_path.with_name(f".{json_path.name}.tmp{os.getpid()}")
    try:
        program.save(str(tmp_onnx), external_data=False)
        spec_dict["onnx"]["sha256"] = _sha256(tmp_onnx)
        tmp_json.write_text(json.dumps(spec_dict, indent=2) + "\n")
        if check:
            err = parity_error(model, tmp_onnx, cfg.dim)
            if err > 1e-5:
                raise ConfigError(f"the exported model differs from the torch actor by {err:.2e} (> 1e-5)")
        os.replace(tmp_onnx, out)
        os.replace(tmp_json, json_path)
    finally:
        for t in (tmp_onnx, tmp_json):
            if t.exists():
                t.unlink()
    return out, json_path


def parity_error(model, onnx_path, obs_dim: int, obs: np.ndarray | None = None) -> float:
    """Largest absolute difference between the torch module and the ONNX file on ``obs``
    (default: 512 random observation rows)."""
    import onnxruntime as ort
    import torch

    if obs is None:
        obs = np.random.default_rng(0).normal(0.0, 1.0, (512, obs_dim)).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(obs, dtype=np.float32)})[0]
    with torch.no_grad():
        want = model(torch.as_tensor(obs)).numpy()
    return float(np.max(np.abs(got - want)))


# ---------------------------------------------------------------------------- CLI
def _cmd(args: argparse.Namespace) -> int:
    try:
        onnx_path, json_path = export_driver(args.driver, args.out)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"racing export needs {exc.name}: pip install 'racing-rl[train,export]'") from None
    spec = json.loads(json_path.read_text())
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e3:.0f} kB) and {json_path}")
    print(f"  observation: {spec['observation']['dim']} floats, action: 2 in [-1, 1] at "
          f"{spec['control']['control_hz']:g} Hz, vehicle: {spec['vehicle']['name']}")
    print(f"  try it: racing eval --driver onnx:{onnx_path} --track club")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a trained driver as ONNX + a JSON spec (for game engines)",
                       description="Write the deterministic actor of a trained driver as ONNX and, beside it, a JSON "
                                   "spec of its observation, action, control rate and vehicle.")
    p.add_argument("--driver", required=True, help="builtin, a training run directory, a checkpoint or a driver.pt")
    p.add_argument("--out", required=True, help="the .onnx file to write (the .json goes beside it)")
    p.set_defaults(func=_cmd)

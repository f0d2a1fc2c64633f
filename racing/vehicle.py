"""Vehicle parameters (SI units) and presets.

:class:`VehicleParams` is a frozen, validated record. The simulator kernels take it packed
as a float64 row (:meth:`VehicleParams.to_array`); the column of every field is declared
once in :data:`PARAM_INDEX`, so kernels never read positional floats by guesswork.

Presets live in ``configs/vehicles/*.yaml`` (and ship inside the package); a vehicle spec
is a preset name (``gt3``, ``road``) or a path to a YAML file with the same keys.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from racing.errors import ConfigError

G = 9.81  # [m/s^2]

#: Directory with the shipped presets (inside the package, mirrored in configs/vehicles/).
PRESET_DIR = Path(__file__).resolve().parent / "data" / "vehicles"


@dataclass(frozen=True)
class VehicleParams:
    """Parameters of the dynamic single-track ("bicycle") model. Units in brackets."""

    name: str = "vehicle"
    # --- mass and geometry
    mass_kg: float = 1300.0  # [kg] with driver and fuel
    yaw_inertia_kgm2: float = 1800.0  # [kg m^2] about the vertical axis
    lf_m: float = 1.25  # [m] centre of gravity to front axle
    lr_m: float = 1.40  # [m] centre of gravity to rear axle
    cg_height_m: float = 0.40  # [m] for longitudinal load transfer
    length_m: float = 4.6  # [m] footprint length (collisions, track limits)
    width_m: float = 2.0  # [m] footprint width
    # --- tyres: Pacejka magic formula (lateral), friction ellipse for combined slip
    mu: float = 1.6  # [-] peak friction coefficient of the front tyres (lateral and longitudinal)
    rear_grip_ratio: float = 1.06  # [-] rear peak friction / front (wider rear tyres: stable at the limit)
    pacejka_b_front: float = 12.0  # [1/rad] stiffness factor B, front axle
    pacejka_b_rear: float = 13.0  # [1/rad] stiffness factor B, rear axle
    pacejka_c: float = 1.6  # [-] shape factor C (> 1 so the curve has a peak)
    pacejka_e: float = 0.0  # [-] curvature factor E (<= 1)
    # --- powertrain (rear-wheel drive) and brakes
    max_power_w: float = 370_000.0  # [W] at the wheels
    max_drive_force_n: float = 13_000.0  # [N] traction/torque limit at low speed
    max_brake_force_n: float = 30_000.0  # [N] total brake force at full pedal
    brake_balance_front: float = 0.6  # [-] share of brake force on the front axle
    abs_limit: float = 0.95  # [-] ABS/traction control: longitudinal force <= this x axle grip
    rear_brake_limit: float = 0.7  # [-] brake-force distribution: rear brake force <= this x rear grip
    # --- aerodynamics and rolling resistance
    air_density_kgpm3: float = 1.2  # [kg/m^3]
    drag_area_m2: float = 0.80  # [m^2] drag coefficient times frontal area (Cd A)
    lift_area_m2: float = 2.2  # [m^2] downforce coefficient times area (Cl A); 0 = none
    aero_balance_front: float = 0.42  # [-] share of downforce on the front axle
    rolling_resistance: float = 0.015  # [-] rolling resistance coefficient on asphalt
    # --- steering actuator
    max_steer_rad: float = 0.35  # [rad] road-wheel angle at full lock
    max_steer_rate_radps: float = 1.2  # [rad/s] how fast the road wheels can turn
    # --- low-speed blend to the kinematic model (no singularity at v = 0)
    blend_low_mps: float = 3.0  # [m/s] below: purely kinematic lateral/yaw motion
    blend_high_mps: float = 6.0  # [m/s] above: purely dynamic (tyre forces)
    kinematic_tau_s: float = 0.05  # [s] time constant pulling vy, r to kinematic values

    def __post_init__(self):
        for f in fields(self):
            if f.name == "name":
                continue
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ConfigError(f"vehicle '{self.name}': {f.name} must be a finite number, got {v!r}")
            object.__setattr__(self, f.name, float(v))
        positive = [
            "mass_kg", "yaw_inertia_kgm2", "lf_m", "lr_m", "length_m", "width_m", "mu", "rear_grip_ratio",
            "pacejka_b_front", "pacejka_b_rear", "max_power_w", "max_drive_force_n", "max_brake_force_n",
            "air_density_kgpm3", "max_steer_rad", "max_steer_rate_radps", "kinematic_tau_s", "blend_high_mps",
        ]
        for k in positive:
            if getattr(self, k) <= 0:
                raise ConfigError(f"vehicle '{self.name}': {k} must be > 0, got {getattr(self, k)}")
        nonneg = ["cg_height_m", "drag_area_m2", "lift_area_m2", "rolling_resistance", "blend_low_mps"]
        for k in nonneg:
            if getattr(self, k) < 0:
                raise ConfigError(f"vehicle '{self.name}': {k} must be >= 0, got {getattr(self, k)}")
        if not 0.0 < self.rear_brake_limit <= self.abs_limit:
            raise ConfigError(
                f"vehicle '{self.name}': rear_brake_limit must be in (0, abs_limit={self.abs_limit}], got {self.rear_brake_limit}")
        if not 0.5 <= self.abs_limit <= 1.0:
            raise ConfigError(f"vehicle '{self.name}': abs_limit must be in [0.5, 1], got {self.abs_limit}")
        for k in ("brake_balance_front", "aero_balance_front"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"vehicle '{self.name}': {k} must be in [0, 1], got {getattr(self, k)}")
        if not 1.0 < self.pacejka_c < 2.0:
            raise ConfigError(f"vehicle '{self.name}': pacejka_c must be in (1, 2), got {self.pacejka_c}")
        if self.pacejka_e > 1.0:
            raise ConfigError(f"vehicle '{self.name}': pacejka_e must be <= 1, got {self.pacejka_e}")
        if self.blend_high_mps <= self.blend_low_mps:
            raise ConfigError(
                f"vehicle '{self.name}': blend_high_mps ({self.blend_high_mps}) must exceed blend_low_mps ({self.blend_low_mps})"
            )
        if self.max_steer_rad >= math.pi / 2:
            raise ConfigError(f"vehicle '{self.name}': max_steer_rad must be below pi/2, got {self.max_steer_rad}")

    # ---- derived values (properties, never stored)
    @property
    def wheelbase_m(self) -> float:
        return self.lf_m + self.lr_m

    @property
    def top_speed_mps(self) -> float:
        """Speed where power at the wheels equals drag plus rolling resistance [m/s]."""
        lo, hi = 0.1, 200.0
        for _ in range(100):
            v = 0.5 * (lo + hi)
            resist = 0.5 * self.air_density_kgpm3 * self.drag_area_m2 * v * v + self.rolling_resistance * (
                self.mass_kg * G + 0.5 * self.air_density_kgpm3 * self.lift_area_m2 * v * v
            )
            if min(self.max_drive_force_n, self.max_power_w / v) > resist:
                lo = v
            else:
                hi = v
        return 0.5 * (lo + hi)

    def _axles(self):
        """(friction, share of the weight, share of the downforce) for front and rear."""
        wb = self.wheelbase_m
        return (
            (self.mu, self.lr_m / wb, self.aero_balance_front),
            (self.mu * self.rear_grip_ratio, self.lf_m / wb, 1.0 - self.aero_balance_front),
        )

    def max_lateral_accel(self, speed_mps) -> "float | np.ndarray":
        """Steady-state lateral acceleration limit at ``speed`` [m/s^2]: the first axle to
        saturate, each carrying its share ``m a l_other / L`` of the centripetal force with
        grip ``mu F_z`` (weight plus its share of the downforce)."""
        q = 0.5 * self.air_density_kgpm3 * np.asarray(speed_mps, dtype=np.float64) ** 2
        out = None
        for mu, w_share, a_share in self._axles():
            a = mu * (G + q * self.lift_area_m2 * a_share / (self.mass_kg * w_share))
            out = a if out is None else np.minimum(out, a)
        return out if np.ndim(out) else float(out)

    def grip_limited_speed(self, radius_m: float) -> float:
        """Closed-form steady cornering speed on radius ``R`` [m/s]: ``v^2 / R`` equals
        :meth:`max_lateral_accel` (v). Infinite when downforce outgrows the demand."""
        best = math.inf
        for mu, w_share, a_share in self._axles():
            k = mu * 0.5 * self.air_density_kgpm3 * self.lift_area_m2 * a_share / (self.mass_kg * w_share)
            denom = 1.0 / radius_m - k
            if denom > 0:
                best = min(best, math.sqrt(mu * G / denom))
        return best

    def to_array(self) -> np.ndarray:
        """Pack as a float64 row in :data:`PARAM_INDEX` order (for the kernels)."""
        return np.array([getattr(self, name) for name in PARAM_NAMES], dtype=np.float64)

    def replace(self, **changes) -> "VehicleParams":
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict:
        d = dataclasses.asdict(self)
        d["top_speed_mps"] = round(self.top_speed_mps, 2)
        return d


#: Numeric fields in kernel column order.
PARAM_NAMES: tuple[str, ...] = tuple(f.name for f in fields(VehicleParams) if f.name != "name")
#: Column of each field in :meth:`VehicleParams.to_array`.
PARAM_INDEX: dict[str, int] = {name: i for i, name in enumerate(PARAM_NAMES)}
NUM_PARAMS = len(PARAM_NAMES)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def vehicle_from_dict(data: dict, *, origin: str = "vehicle") -> VehicleParams:
    """Build parameters from a mapping, rejecting unknown keys by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of parameter names to values")
    known = {f.name for f in fields(VehicleParams)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{origin}: unknown vehicle parameter(s) {unknown}; allowed: {sorted(known)}")
    return VehicleParams(**data)


def load_vehicle(spec: "str | Path | VehicleParams | None" = None) -> VehicleParams:
    """A preset name (``gt3``, ``road``), a YAML path, or parameters (returned as is)."""
    from racing.yamlio import read_yaml

    if spec is None:
        spec = "gt3"
    if isinstance(spec, VehicleParams):
        return spec
    spec = str(spec)
    path = Path(spec)
    if not (spec.endswith((".yaml", ".yml")) or path.exists()):
        path = PRESET_DIR / f"{spec}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown vehicle '{spec}': use a preset ({', '.join(list_presets())}) or a YAML file path")
    data = dict(read_yaml(path, "vehicle") or {})
    data.setdefault("name", path.stem)
    return vehicle_from_dict(data, origin=str(path))

"""Physics facts against closed forms (see racing/dynamics.py for the model)."""

import math

import numpy as np
import pytest

from racing import dynamics as dy
from racing.autopilot import pure_pursuit
from racing.errors import ConfigError
from racing.sim import RaceSim, SimConfig
from racing.vehicle import G, VehicleParams, load_vehicle

from conftest import ring_track

PRESETS = ["gt3", "road"]


@pytest.mark.parametrize("veh", PRESETS)
@pytest.mark.parametrize("pedal", [0.0, -1.0])
def test_car_at_rest_stays_at_rest(ring100, veh, pedal):
    sim = RaceSim(ring100, veh)
    sim.reset_race(0, s=[10.0], d=[0.0], speed=[0.0])
    before = sim.F.copy()
    for _ in range(50):
        sim.step([[0.0, pedal]])
    for f in (dy.F_X, dy.F_Y, dy.F_YAW, dy.F_VX, dy.F_VY, dy.F_R):
        assert sim.F[f, 0] == before[f, 0]


@pytest.mark.parametrize("veh", PRESETS)
def test_starts_from_rest_and_turns_at_walking_pace(big_ring, veh):
    """No singularity at v = 0: from rest, full lock at walking pace follows the kinematic
    bicycle (yaw rate = v tan(delta) / L)."""
    vp = load_vehicle(veh)
    sim = RaceSim(big_ring, veh)
    sim.reset_race(0, s=[0.0], d=[0.0], speed=[0.0])
    rates = []
    for k in range(60):
        throttle = 0.08 if sim.speed[0] < 1.5 else 0.0
        sim.step([[1.0, throttle]])
        assert np.all(np.isfinite(sim.F[:, 0]))
        rates.append((sim.F[dy.F_VX, 0], sim.F[dy.F_R, 0], sim.F[dy.F_STEER, 0]))
    vx, r, delta = rates[-1]
    assert 0.5 < vx < 2.5  # walking pace
    assert delta == pytest.approx(vp.max_steer_rad)
    assert r == pytest.approx(vx * math.tan(delta) / vp.wheelbase_m, rel=0.05)


@pytest.mark.parametrize("veh", PRESETS)
def test_steady_cornering_matches_grip_limited_speed(veh):
    """Ramp the speed on a 100 m ring: the largest lateral acceleration the car sustains is
    the closed form (first axle to reach mu F_z) within a few percent, never above it."""
    vp = load_vehicle(veh)
    radius = 100.0
    track = ring_track(radius, 20.0)
    vc = vp.grip_limited_speed(radius)
    sim = RaceSim(track, veh)
    sim.reset_race(0, s=[0.0], d=[0.0], speed=[0.7 * vc])
    best = 0.0
    for k in range(800):
        sim.step(pure_pursuit(sim, [0], vc * (0.7 + 0.4 * k / 800), lookahead_s=0.3))
        rho = math.hypot(sim.x[0], sim.y[0])
        v = sim.speed[0]
        limit = vp.max_lateral_accel(v)
        best = max(best, v * v / rho / limit)
    assert 0.94 < best <= 1.01


@pytest.mark.parametrize("veh", PRESETS)
def test_holds_the_line_below_the_limit_and_not_above(veh):
    vp = load_vehicle(veh)
    track = ring_track(100.0, 20.0)
    vc = vp.grip_limited_speed(100.0)
    results = {}
    for frac in (0.93, 1.06):
        sim = RaceSim(track, veh)
        sim.reset_race(0, s=[0.0], d=[0.0], speed=[0.7 * vc])
        for _ in range(300):
            sim.step(pure_pursuit(sim, [0], frac * vc, lookahead_s=0.3))
        results[frac] = (abs(sim.d[0]), sim.speed[0])
    assert results[0.93][0] < 3.0 and results[0.93][1] == pytest.approx(0.93 * vc, rel=0.02)
    d_above, v_above = results[1.06]
    assert d_above > 3.0 or v_above < 0.98 * vc


@pytest.mark.parametrize("veh", PRESETS)
def test_top_speed_matches_power_and_drag(big_ring, veh):
    vp = load_vehicle(veh)
    sim = RaceSim(big_ring, veh)
    sim.reset_race(0, s=[0.0], d=[0.0], speed=[0.9 * vp.top_speed_mps])
    for _ in range(1200):
        sim.step(pure_pursuit(sim, [0], 200.0))
    assert sim.speed[0] == pytest.approx(vp.top_speed_mps, rel=0.01)


def braking_decel(vp) -> float:
    """Closed-form flat-out deceleration [m/s^2] without aero: the pedal split by the brake
    balance, the front capped by ABS (abs_limit mu F_zf), the rear by the brake-force
    distribution (rear_brake_limit mu_r F_zr), axle loads with the load transfer m a h / L
    (a fixed point, iterated)."""
    m, L = vp.mass_kg, vp.wheelbase_m
    a = 0.0
    for _ in range(200):
        shift = m * a * vp.cg_height_m / L
        front = min(vp.brake_balance_front * vp.max_brake_force_n,
                    vp.abs_limit * vp.mu * (m * G * vp.lr_m / L + shift))
        rear = min((1 - vp.brake_balance_front) * vp.max_brake_force_n,
                   vp.rear_brake_limit * vp.mu * vp.rear_grip_ratio * (m * G * vp.lf_m / L - shift))
        a = (front + rear) / m
    return a


def test_braking_distance_matches_friction(big_ring):
    """Road car (no downforce), 30 m/s to rest at full brake: v^2 / (2 a) with the
    closed-form deceleration above, shortened a little by drag and rolling resistance."""
    vp = load_vehicle("road")
    sim = RaceSim(big_ring, vp)
    sim.reset_race(0, s=[0.0], d=[0.0], speed=[30.0])
    start = sim.dist[0]
    for _ in range(80):
        u = pure_pursuit(sim, [0], 0.0)
        u[:, 1] = -1.0
        sim.step(u)
    closed = 30.0**2 / (2 * braking_decel(vp))
    assert 0.8 * vp.mu * G < braking_decel(vp) < vp.mu * G  # tyres, not the pedal, limit it
    assert sim.F[dy.F_VX, 0] == 0.0 and sim.speed[0] < 1e-6
    assert 0.94 * closed < sim.dist[0] - start <= closed


def test_drafting_car_gains_on_a_straight(big_ring):
    def gap_after(cfg):
        sim = RaceSim(big_ring, "gt3", 1, 2, config=cfg)
        sim.reset_race(0, s=[30.0, 15.0], d=[0.0, 0.0], speed=[50.0, 50.0])
        for _ in range(60):  # 6 s at full throttle, before the follower reaches the leader
            sim.step(pure_pursuit(sim, [0, 1], 200.0))
        return sim.dist[0] - sim.dist[1], sim.speed[1] - sim.speed[0]

    gap_draft, dv_draft = gap_after(SimConfig())
    gap_none, dv_none = gap_after(SimConfig(draft_max=0.0))
    assert abs(gap_none - 15.0) < 0.5  # identical cars, no wake: the gap holds
    assert gap_draft < gap_none - 3.0  # in the wake: the follower closes in
    assert dv_draft > 1.0


def _world_velocity(sim, c):
    yaw = sim.F[dy.F_YAW, c]
    vx, vy = sim.F[dy.F_VX, c], sim.F[dy.F_VY, c]
    return np.array([vx * math.cos(yaw) - vy * math.sin(yaw), vx * math.sin(yaw) + vy * math.cos(yaw)])


def test_impulse_conserves_momentum_and_loses_energy():
    rng = np.random.default_rng(0)
    for _ in range(200):
        F = np.zeros((dy.NUM_F, 2))
        F[dy.F_X] = rng.normal(0, 1, 2)
        F[dy.F_Y] = rng.normal(0, 1, 2)
        F[dy.F_YAW] = rng.uniform(-np.pi, np.pi, 2)
        F[dy.F_VX] = rng.uniform(0, 60, 2)
        F[dy.F_VY] = rng.normal(0, 2, 2)
        F[dy.F_R] = rng.normal(0, 0.5, 2)
        m = rng.uniform(1000, 1600, 2)
        iz = rng.uniform(1500, 2500, 2)
        n = rng.normal(size=2)
        n /= np.linalg.norm(n)
        p = F[[dy.F_X, dy.F_Y]].mean(axis=1)
        masses = m

        def energy(F):
            return float(np.sum(0.5 * masses * (F[dy.F_VX] ** 2 + F[dy.F_VY] ** 2) + 0.5 * iz * F[dy.F_R] ** 2))

        p0 = dy.car_momentum(F, masses, [0, 1])
        e0 = energy(F)
        dy.apply_impulse_pair(F, 0, 1, m[0], m[1], iz[0], iz[1], p[0], p[1], n[0], n[1], 0.2, 0.3)
        np.testing.assert_allclose(dy.car_momentum(F, masses, [0, 1]), p0, rtol=1e-12, atol=1e-8)
        assert energy(F) <= e0 + 1e-6


def test_rear_end_contact_in_the_sim_conserves_momentum(big_ring):
    sim = RaceSim(big_ring, "gt3", 1, 2)
    sim.reset_race(0, s=[20.0, 14.0], d=[0.0, 0.0], speed=[20.0, 30.0])
    p_before = dy.car_momentum(sim.F, sim.masses, [0, 1])
    ev = None
    for _ in range(10):
        ev = sim.step([[0.0, 0.0], [0.0, 0.0]])
        if len(ev.of_type(dy.EV_CAR)):
            break
    cars = ev.of_type(dy.EV_CAR)
    assert len(cars) == 1
    assert cars[0, dy.E_VALUE] == pytest.approx(10.0, rel=0.1)  # closing speed
    p_after = dy.car_momentum(sim.F, sim.masses, [0, 1])
    # tyres and drag act during the step too: momentum holds to within a fraction of a percent
    assert np.linalg.norm(p_after - p_before) / np.linalg.norm(p_before) < 0.01
    v0, v1 = _world_velocity(sim, 0), _world_velocity(sim, 1)
    assert v0[0] ** 2 + v0[1] ** 2 > 20.0**2  # the car ahead was pushed
    assert np.hypot(*v1) < 30.0


@pytest.mark.parametrize("hz", [100.0, 200.0])
def test_integrator_stable_at_every_speed(hz, big_ring):
    """Random steering at speeds from 0 to beyond top speed: no NaN, no blow-up."""
    rng = np.random.default_rng(1)
    speeds = np.linspace(0.0, 95.0, 20)
    sim = RaceSim([big_ring] * 20, "gt3", 20, 1, config=SimConfig(physics_hz=hz))
    for b in range(20):
        sim.reset_race(b, s=[0.0], d=[0.0], speed=[speeds[b]])
    for _ in range(100):
        sim.step(rng.uniform(-1, 1, (20, 2)))
        assert np.all(np.isfinite(sim.F))
        assert np.all(np.abs(sim.F[dy.F_R]) < 30.0)  # rigid-body wall impacts can spin a car fast
        assert np.all(sim.speed < 120.0)


def test_bad_vehicle_parameters_are_rejected():
    with pytest.raises(ConfigError, match="mass_kg must be > 0"):
        VehicleParams(mass_kg=-1)
    with pytest.raises(ConfigError, match="brake_balance_front must be in"):
        VehicleParams(brake_balance_front=1.5)
    with pytest.raises(ConfigError, match="finite number"):
        VehicleParams(mu=float("nan"))
    with pytest.raises(ConfigError, match="unknown vehicle 'nope'"):
        load_vehicle("nope")


def test_vehicle_yaml_rejects_unknown_keys(tmp_path):
    p = tmp_path / "car.yaml"
    p.write_text("mass_kg: 1200\nhorsepower: 500\n")
    with pytest.raises(ConfigError, match="horsepower"):
        load_vehicle(str(p))
    p.write_text("mass_kg: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_vehicle(str(p))


def test_presets_document_every_parameter_with_a_unit():
    from pathlib import Path

    from racing.vehicle import PARAM_NAMES, PRESET_DIR

    for path in Path(PRESET_DIR).glob("*.yaml"):
        text = path.read_text()
        for name in PARAM_NAMES:
            line = next((ln for ln in text.splitlines() if ln.startswith(name + ":")), None)
            assert line is not None, f"{path.name} lacks {name}"
            assert "#" in line, f"{path.name}: {name} has no comment"
            assert "[" in line.split("#", 1)[1], f"{path.name}: {name} has no unit"


def test_bad_sim_config_is_rejected():
    with pytest.raises(ConfigError, match="whole multiple"):
        SimConfig(physics_hz=95.0)
    with pytest.raises(ConfigError, match="draft_max"):
        SimConfig(draft_max=1.0)


@pytest.mark.parametrize("veh", PRESETS)
def test_full_braking_with_small_steering_corrections_stays_straight(big_ring, veh):
    """ABS keeps cornering grip on both axles: braking from top speed with a wobbling
    steering wheel does not spin the car."""
    vp = load_vehicle(veh)
    rng = np.random.default_rng(7)
    sim = RaceSim(big_ring, veh)
    sim.reset_race(0, s=[0.0], d=[0.0], speed=[0.95 * vp.top_speed_mps])
    for _ in range(120):
        sim.step([[rng.uniform(-0.05, 0.05), -1.0]])
        assert abs(sim.F[dy.F_R, 0]) < 0.5  # [rad/s] no spin
    assert sim.speed[0] < 1.0 and abs(sim.d[0]) < 8.0

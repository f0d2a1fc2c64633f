"""Race simulation: lap accounting, track limits, walls, contacts, determinism, fuzz."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from racing import dynamics as dy
from racing.autopilot import pure_pursuit
from racing.errors import ConfigError
from racing.sim import RaceSim, SimConfig

from conftest import ring_track


def drive(sim, steps, speed, line_d=None, cars=(0,)):
    events = []
    for _ in range(steps):
        ev = sim.step(pure_pursuit(sim, list(cars), speed, line_d=line_d, lookahead_s=0.4))
        events.append(ev.rows)
    return np.concatenate(events) if events else np.zeros((0, dy.NUM_E))


def of_type(rows, typ):
    return rows[rows[:, dy.E_TYPE] == typ]


def test_flying_laps_and_sectors(ring100):
    sim = RaceSim(ring100, "gt3")
    L = ring100.length
    sim.reset_race(0, s=[L - 30.0], d=[0.0], speed=[25.0], standing=False)
    rows = drive(sim, int(3.5 * L / 25.0 * 10), 25.0)
    laps = of_type(rows, dy.EV_LAP)
    assert len(laps) == 3 == sim.laps_completed[0] == len(sim.laps[0])
    for rec in sim.laps[0]:
        assert rec.valid
        assert rec.time_s == pytest.approx(L / 25.0, rel=0.01)
        assert len(rec.sectors_s) == 3
        assert sum(rec.sectors_s) == pytest.approx(rec.time_s, abs=1e-9)
        for t in rec.sectors_s:
            assert t == pytest.approx(rec.time_s / 3.0, rel=0.02)
    assert [r.lap for r in sim.laps[0]] == [1, 2, 3]


def test_standing_start_first_lap_includes_the_grid(ring100):
    sim = RaceSim(ring100, "gt3")
    L = ring100.length
    sim.reset_race(0, s=[L - 8.0], d=[0.0], speed=[25.0], standing=True)
    drive(sim, 12, 25.0)  # over the line: not a lap
    assert sim.laps_completed[0] == 0
    drive(sim, int(L / 25.0 * 10) + 5, 25.0)
    assert sim.laps_completed[0] == 1
    assert sim.laps[0][0].time_s == pytest.approx((L + 8.0) / 25.0, rel=0.01)


def _turn_around(sim, c):
    sim.F[dy.F_YAW, c] += math.pi
    sim.F[dy.F_VY, c] = 0.0
    sim.F[dy.F_R, c] = 0.0


def test_driving_backwards_over_the_line_never_counts(big_ring):
    sim = RaceSim(big_ring, "gt3")
    L = big_ring.length
    # backwards over the line from just ahead of it: progress falls below zero, no timing
    sim.reset_race(0, s=[10.0], d=[0.0], speed=[10.0], heading_offset=[math.pi], standing=False)
    rows = [sim.step([[0.0, 0.1]]).rows for _ in range(40)]
    assert sim.dist[0] < -20.0
    assert sim.I[dy.I_TIMING, 0] == 0 and sim.laps_completed[0] == 0
    # forwards over the line starts the timed lap ...
    sim.reset_race(0, s=[L - 30.0], d=[0.0], speed=[10.0], standing=False)
    rows += [sim.step([[0.0, 0.1]]).rows for _ in range(40)]
    assert sim.I[dy.I_TIMING, 0] == 1
    lap_t0 = sim.F[dy.F_LAP_T0, 0]
    # ... backwards over it again and forwards again neither completes nor restarts a lap
    for _ in range(2):
        _turn_around(sim, 0)
        rows += [sim.step([[0.0, 0.1]]).rows for _ in range(60)]
    assert sim.dist[0] > 0.0
    rows = np.concatenate(rows)
    assert len(of_type(rows, dy.EV_LAP)) == 0 and sim.laps_completed[0] == 0
    assert sim.F[dy.F_LAP_T0, 0] == lap_t0
    assert sim.F[dy.F_NEXT_LINE, 0] == pytest.approx(L)  # the next lap ends one lap on


def test_reversing_loses_progress(big_ring):
    sim = RaceSim(big_ring, "gt3")
    sim.reset_race(0, s=[100.0], d=[0.0], speed=[20.0], heading_offset=[math.pi])
    start = sim.dist[0]
    sim.step([[0.0, 0.0]])
    assert sim.F[dy.F_PROGRESS_STEP, 0] == pytest.approx(-2.0, rel=0.05)
    assert sim.dist[0] < start


def test_corner_cut_invalidates_the_lap(ring100):
    """The ring turns left: leaving on the left (inside) is a cut; on the right it is a
    track-limit breach. Both invalidate the lap."""
    L = ring100.length
    for side, cut_expected in ((+10.5, True), (-10.5, False)):
        sim = RaceSim(ring100, "gt3")
        sim.reset_race(0, s=[L - 30.0], d=[0.0], speed=[20.0], standing=False)
        rows = drive(sim, int(1.4 * L / 20 * 10), 20.0, line_d=lambda race, s: 0.0)
        assert sim.laps[0] and sim.laps[0][-1].valid  # clean lap first
        s0 = sim.s[0]

        def line(race, s, side=side, s0=s0):  # ease onto the offset line over 80 m
            return side * min(1.0, ((s - s0) % L) / 80.0)

        rows = drive(sim, int(1.2 * L / 20 * 10), 20.0, line_d=line)
        assert len(of_type(rows, dy.EV_OFF_TRACK)) >= 1
        assert (len(of_type(rows, dy.EV_CORNER_CUT)) >= 1) == cut_expected
        assert not sim.laps[0][-1].valid
        assert sim.F[dy.F_OFF_TIME, 0] > 1.0


def test_walls_stop_the_car_and_record_contact(ring100):
    sim = RaceSim(ring100, "gt3")
    sim.reset_race(0, s=[0.0], d=[0.0], speed=[30.0])
    rows = np.concatenate([sim.step([[0.0, 1.0]]).rows for _ in range(60)])
    walls = of_type(rows, dy.EV_WALL)
    assert len(walls) >= 1
    assert walls[0, dy.E_VALUE] > 1.0  # closing speed into the wall
    assert walls[0, dy.E_INDEX] == -1  # the outside of a left-hand ring is on the right
    wall_d = -(ring100.w_right[0] + ring100.wall_margin_m)
    half_diag = 0.5 * math.hypot(4.6, 2.0)
    assert sim.d[0] > wall_d + 0.5  # pushed back inside
    assert sim.d[0] < wall_d + half_diag + 1.0  # ... but still against the wall
    assert sim.I[dy.I_WALL, 0] == 1


def test_contact_event_names_both_cars(big_ring):
    sim = RaceSim(big_ring, "gt3", 1, 3)
    sim.reset_race(0, s=[40.0, 30.0, 0.0], d=[0.0, 0.0, 0.0], speed=[20.0, 30.0, 10.0])
    rows = np.concatenate([sim.step(np.zeros((3, 2))).rows for _ in range(15)])
    cars = of_type(rows, dy.EV_CAR)
    assert len(cars) >= 1
    assert cars[0, dy.E_A] == 0 and cars[0, dy.E_B] == 1
    assert cars[0, dy.E_SA] > cars[0, dy.E_SB]  # a is ahead
    assert cars[0, dy.E_NX] ** 2 + cars[0, dy.E_NY] ** 2 == pytest.approx(1.0)


def test_positions_follow_race_distance(big_ring):
    sim = RaceSim(big_ring, "gt3", 2, 3)
    sim.reset_race(0, s=[50.0, 80.0, 10.0], d=[0.0, 4.0, -4.0])
    sim.reset_race(1, s=[5.0, 10.0, 15.0], d=[0.0, 4.0, -4.0])
    pos = sim.positions()
    assert pos[0].tolist() == [2, 1, 3]
    assert pos[1].tolist() == [3, 2, 1]


def test_grid_start_cars_behind_the_line(ring100):
    sim = RaceSim(ring100, "gt3", 1, 6)
    assert np.all(sim.dist < 0)
    assert np.all(np.abs(sim.d) < ring100.w_left[0])
    assert sim.positions()[0].tolist() == [1, 2, 3, 4, 5, 6]


def test_races_use_their_own_tracks(ring100, big_ring):
    sim = RaceSim([ring100, big_ring], "gt3", 2, 1)
    assert sim.track_of(0) is ring100 and sim.track_of(1) is big_ring
    sim.reset_race(0, s=[0.0], d=[0.0], speed=[20.0])
    sim.reset_race(1, s=[0.0], d=[0.0], speed=[20.0])
    drive(sim, 30, 20.0, cars=(0, 1))
    assert abs(sim.d[0]) < 1.0 and abs(sim.d[1]) < 1.0
    sim.set_track(0, big_ring)
    sim.reset_race(0, s=[0.0], d=[0.0])
    assert sim.track_of(0) is big_ring


def test_same_inputs_bit_identical_states(ring100):
    rng = np.random.default_rng(3)
    controls = rng.uniform(-1, 1, (100, 5 * 4, 2))

    def run():
        sim = RaceSim(ring100, ["gt3", "road", "gt3", "road"], 5, 4)
        out = []
        for u in controls:
            ev = sim.step(u)
            out.append(ev.rows.copy())
        return sim.F.copy(), sim.I.copy(), np.concatenate(out)

    a, b = run(), run()
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def test_bad_controls_and_shapes(ring100):
    sim = RaceSim(ring100, "gt3", 2, 2)
    with pytest.raises(ValueError, match="controls must be finite; car 1"):
        sim.step([[0, 0], [np.nan, 0], [0, 0], [0, 0]])
    with pytest.raises(ValueError):
        sim.step(np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="vehicles"):
        RaceSim(ring100, ["gt3", "road", "gt3"], 2, 2)
    with pytest.raises(ConfigError, match="num_races"):
        RaceSim(ring100, "gt3", 0, 1)
    with pytest.raises(ConfigError, match="tracks for"):
        RaceSim([ring100], "gt3", 2, 1)
    # out-of-range (finite) controls are clipped to [-1, 1]
    sim.step(np.full((4, 2), 1e9))
    assert np.all(np.abs(sim.F[dy.F_STEER_CMD]) <= 1.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    radius=st.floats(15.0, 600.0),
    veh=st.sampled_from(["gt3", "road"]),
    speed=st.floats(0.0, 90.0),
    extreme=st.booleans(),
)
def test_fuzz_random_and_extreme_controls_stay_finite(seed, radius, veh, speed, extreme):
    from racing.trackio import load_track

    rng = np.random.default_rng(seed)
    tracks = [ring_track(radius, 6.0), load_track(f"random:{seed % 50}")]
    sim = RaceSim(tracks, veh, 2, 3)
    for b in range(2):
        L = sim.track_of(b).length
        sim.reset_race(b, s=rng.uniform(0, L, 3), d=rng.uniform(-3, 3, 3), speed=[speed] * 3,
                       heading_offset=rng.uniform(-np.pi, np.pi, 3))
    for _ in range(40):
        u = rng.choice([-1.0, 1.0], (6, 2)) if extreme else rng.uniform(-1, 1, (6, 2))
        sim.step(u)
    assert np.all(np.isfinite(sim.F))
    assert np.all(sim.speed < 150.0)


def test_sim_config_substeps():
    cfg = SimConfig(control_hz=20.0, physics_hz=200.0)
    assert cfg.substeps == 10 and cfg.dt == pytest.approx(0.005)


def test_parallel_and_serial_kernels_agree_bit_for_bit(ring100):
    rng = np.random.default_rng(5)
    controls = rng.uniform(-1, 1, (60, 8 * 3, 2))
    states = []
    for parallel in (False, True):
        sim = RaceSim(ring100, "gt3", 8, 3, parallel=parallel)
        for u in controls:
            sim.step(u)
        states.append((sim.F.copy(), sim.I.copy()))
    assert np.array_equal(states[0][0], states[1][0]) and np.array_equal(states[0][1], states[1][1])

"""Scripted drivers: alien laps against the reference, skills, race-craft, determinism, errors.

The alien tests also check that the simulator and the reference lap agree: the alien drives
the reference line at the reference speed, limited only by what its own model of the
simulator (which adds the tyres' induced drag the reference leaves out) says the car can do.
"""

import math
import subprocess
import sys

import numpy as np
import pytest

from racing import dynamics as dy
from racing.errors import ConfigError
from racing.reference import reference_lap
from racing.rules import Stewards
from racing.sim import RaceSim
from racing.trackio import load_track

from agents.scripted import SKILLS, ScriptedDriver, ScriptedDriverAdapter, resolve_skill

BUILTIN = ["oval", "club", "technical", "flowing"]


def flying_laps(track_specs, vehicle, skill="alien", laps=1, seed=0):
    """One car per race on each track, rolling onto its line just before the start line;
    returns (sim, driver, refs, event rows) after every car completed ``laps`` flying laps."""
    tracks = [load_track(t) for t in track_specs]
    sim = RaceSim(tracks, vehicle, num_races=len(tracks), cars_per_race=1)
    drv = ScriptedDriver(skill, seed=seed, racecraft=False)
    refs = [reference_lap(t, sim.vehicles[0]) for t in tracks]
    for b, t in enumerate(tracks):
        plan = drv.plan(t, sim.vehicles[b])
        i0 = t.n - int(60.0 / t.ds)
        sim.reset_race(b, s=[t.s[i0]], d=[plan.d[i0]], speed=[plan.v[i0]], standing=False)
    cars = np.arange(len(tracks))
    rows = []
    limit = int(max(r.lap_time_s for r in refs) * (laps + 0.5) * 1.4 * sim.config.control_hz)
    for _ in range(limit):
        rows.append(sim.step(drv(sim, cars)).rows)
        if all(len(sim.laps[c]) >= laps for c in cars):
            break
    return sim, drv, refs, np.concatenate(rows)


def events_of(rows, typ, car):
    return rows[(rows[:, dy.E_TYPE] == typ) & (rows[:, dy.E_A] == car)]


def test_alien_laps_builtin_circuits_within_3pct_of_the_reference():
    """gt3 on every built-in circuit and a random one, one flying lap each in one batch:
    a valid lap within 3% of the reference, no wall contact, never off the track, and not
    faster than the reference (the alien never drives above the reference speed)."""
    specs = BUILTIN + ["random:1"]
    sim, drv, refs, rows = flying_laps(specs, "gt3")
    for b, spec in enumerate(specs):
        lap = sim.laps[b][0]
        ratio = lap.time_s / refs[b].lap_time_s
        assert lap.valid, spec
        assert len(events_of(rows, dy.EV_WALL, b)) == 0, spec
        assert len(events_of(rows, dy.EV_OFF_TRACK, b)) == 0, spec
        assert 0.995 < ratio < 1.03, (spec, lap.time_s, refs[b].lap_time_s)


@pytest.mark.parametrize("vehicle", ["gt3", "road"])
def test_alien_random_circuits_clean_and_close_to_its_plan(vehicle):
    """Random circuits with both presets: clean valid laps, within 1.5% of the driver's own
    plan (its model of what the simulator allows) and within 4% of the reference."""
    specs = [f"random:{k}" for k in range(2, 6)]
    sim, drv, refs, rows = flying_laps(specs, vehicle)
    for b, spec in enumerate(specs):
        lap = sim.laps[b][0]
        plan = drv.plan(sim.track_of(b), sim.vehicles[b])
        assert lap.valid and len(events_of(rows, dy.EV_WALL, b)) == 0, spec
        assert lap.time_s < 1.015 * plan.lap_time_s, (spec, lap.time_s, plan.lap_time_s)
        assert lap.time_s < 1.04 * refs[b].lap_time_s, (spec, lap.time_s, refs[b].lap_time_s)


def test_alien_road_builtin_circuits_within_3pct_of_the_reference():
    sim, drv, refs, rows = flying_laps(BUILTIN, "road")
    for b, spec in enumerate(BUILTIN):
        assert sim.laps[b][0].valid, spec
        assert sim.laps[b][0].time_s < 1.03 * refs[b].lap_time_s, spec


def test_skills_order_lap_times():
    sim, _, _, _ = flying_laps(["club"], "gt3", skill="alien")
    times = {"alien": sim.laps[0][0].time_s}
    for skill in ("pro", "rookie"):
        sim, _, _, rows = flying_laps(["club"], "gt3", skill=skill, seed=3)
        assert sim.laps[0][0].valid and len(events_of(rows, dy.EV_WALL, 0)) == 0
        times[skill] = sim.laps[0][0].time_s
    assert times["alien"] < times["pro"] < times["rookie"]
    # about the speed ratio of the skills (imperfections cost a little more)
    assert times["rookie"] / times["alien"] == pytest.approx(SKILLS["alien"] / SKILLS["rookie"], rel=0.06)


def race_two(track, slow_skill, *, gap_m=30.0, s0=100.0, steps=None, laps=3):
    """A slow scripted car ``gap_m`` ahead of an alien; returns sim, stewards, step at which
    the alien got 10 m ahead (or None), rows."""
    t = load_track(track)
    sim = RaceSim(t, "gt3", 1, 2)
    slow = ScriptedDriver(slow_skill, seed=1)
    fast = ScriptedDriver("alien")
    p_slow = slow.plan(t, sim.vehicles[0])
    p_fast = fast.plan(t, sim.vehicles[1])
    i_s, i_f = int((s0 + gap_m) / t.ds), int(s0 / t.ds)
    sim.reset_race(0, s=[t.s[i_s], t.s[i_f]], d=[p_slow.d[i_s], p_fast.d[i_f]], speed=[p_slow.v[i_s], p_fast.v[i_f]])
    st = Stewards(sim)
    steps = steps or int(laps * p_fast.lap_time_s * 1.2 * sim.config.control_hz)
    passed, rows = None, []
    u = np.zeros((2, 2))
    for k in range(steps):
        u[0] = slow(sim, [0])[0]
        u[1] = fast(sim, [1])[0]
        ev = sim.step(u)
        st.update(ev)
        rows.append(ev.rows)
        if passed is None and sim.dist[1] - sim.dist[0] > 10.0:
            passed = k
    return sim, st, passed, np.concatenate(rows)


def test_faster_car_passes_a_slower_one_on_the_oval_without_contact():
    sim, st, passed, rows = race_two("oval", "rookie")
    assert passed is not None, "the alien never got past the rookie in three laps"
    assert len(rows[rows[:, dy.E_TYPE] == dy.EV_CAR]) == 0
    for c in (0, 1):
        assert st.summary(c)["wall_contacts"] == 0 and st.summary(c)["track_limits"] == 0


@pytest.mark.parametrize("gap_m", [15.0, 40.0])
def test_car_ahead_braking_hard_is_not_rear_ended(gap_m):
    """On the oval's back straight the leader brakes flat out to a stop; the alien behind
    (same speed, ``gap_m`` centre to centre) stops behind it or goes round it, never into it."""
    t = load_track("oval")
    sim = RaceSim(t, "gt3", 1, 2)
    drv = ScriptedDriver("alien")
    plan = drv.plan(t, sim.vehicles[0])
    s0 = 700.0
    i0, i1 = int((s0 + gap_m) / t.ds), int(s0 / t.ds)
    v0 = plan.v[i1]
    sim.reset_race(0, s=[t.s[i0], t.s[i1]], d=[plan.d[i0], plan.d[i1]], speed=[v0, v0])
    u = np.zeros((2, 2))
    contacts = 0
    for k in range(120):
        lead = drv(sim, [0])[0]
        u[0] = [lead[0], -1.0 if k >= 3 else lead[1]]
        u[1] = drv(sim, [1])[0]
        contacts += len(sim.step(u).of_type(dy.EV_CAR))
    assert sim.speed[0] < 0.5  # the leader did stop
    assert contacts == 0


def test_a_field_of_equal_skill_runs_clean():
    """Ten pros from a standing grid start, two races: no contacts, walls or track limits
    in the first minute (the field sorts itself out behind the leaders)."""
    t = load_track("technical")
    sim = RaceSim(t, "gt3", 2, 10)
    drv = ScriptedDriver("pro", seed=3)
    cars = np.arange(sim.num_cars)
    st = Stewards(sim)
    for _ in range(400):
        st.update(sim.step(drv(sim, cars)))
    tot = {k: sum(st.summary(c)[k] for c in cars) for k in ("collisions", "wall_contacts", "track_limits")}
    assert tot["wall_contacts"] == 0
    assert tot["collisions"] <= 2 and tot["track_limits"] <= 2, tot
    assert np.all(sim.dist[cars] > 1000.0)  # everybody is racing, nobody parked


def test_same_seed_same_race_and_seeds_differ():
    def run(seed):
        t = load_track("club")
        sim = RaceSim(t, "gt3", 1, 4)
        drv = ScriptedDriver("amateur", seed=seed)
        cars = np.arange(4)
        out = []
        for _ in range(150):
            u = drv(sim, cars)
            out.append(u.copy())
            sim.step(u)
        return np.array(out), sim.F.copy()

    u1, f1 = run(7)
    u2, f2 = run(7)
    u3, _ = run(8)
    assert np.array_equal(u1, u2) and np.array_equal(f1, f2)
    assert not np.array_equal(u1, u3)


def test_batched_controls_equal_one_car_at_a_time():
    t = load_track("club")
    sim = RaceSim(t, "gt3", 2, 3)
    cars = np.arange(sim.num_cars)
    warm = ScriptedDriver("pro", seed=2)
    for _ in range(60):
        sim.step(warm(sim, cars))
    a = ScriptedDriver("pro", seed=2)
    b = ScriptedDriver("pro", seed=2)
    together = a(sim, cars)
    alone = np.concatenate([b(sim, [c]) for c in cars])
    np.testing.assert_allclose(together, alone, atol=1e-12)
    assert together.shape == (sim.num_cars, 2) and np.all(np.abs(together) <= 1.0)


@pytest.mark.parametrize("bad", ["expert", "", 0, 0.0, -0.5, 1.01, math.nan, math.inf, True, None, [0.5]])
def test_bad_skill_is_a_clear_config_error(bad):
    with pytest.raises(ConfigError, match="skill"):
        ScriptedDriver(bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_seed_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="seed"):
        ScriptedDriver("pro", seed=bad)


def test_skill_names_and_numbers():
    assert [resolve_skill(k) for k in ("rookie", "amateur", "pro", "alien")] == [0.85, 0.90, 0.95, 1.0]
    assert resolve_skill(" Alien ") == 1.0 and resolve_skill("0.8") == 0.8 and resolve_skill(0.5) == 0.5


def test_driver_protocol_and_bad_car_indices(ring100):
    sim = RaceSim(ring100, "gt3", 1, 2)
    drv = ScriptedDriverAdapter("pro")
    assert drv.name == "scripted:0.95"
    drv.reset(sim, np.array([0, 1]), 5)
    assert drv.seed == 5
    assert drv.act(sim, np.array([], dtype=np.int64)).shape == (0, 2)
    with pytest.raises(ConfigError, match="car indices"):
        drv.act(sim, [2])


def test_importing_the_driver_pulls_no_torch_or_gymnasium():
    code = ("import sys, agents.scripted; "
            "bad = [m for m in ('torch', 'gymnasium', 'ray', 'stable_baselines3') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr

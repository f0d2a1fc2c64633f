"""Reference lap: minimum-curvature racing line and quasi-steady-state speed profile."""

import json
import math

import numpy as np
import pytest

from racing.cli import main
from racing.errors import ConfigError
from racing.raceline import _band_cholesky_solve, _box_least_squares, _CyclicTridiagLSQ, menger_curvature
from racing.reference import (
    GRID_GAP_M, corner_speed, lap_time, racing_line, reference_lap, speed_profile,
)
from racing.trackio import builtin_track_names, load_track
from racing.vehicle import G, load_vehicle

from conftest import ring_track

PRESETS = ["gt3", "road"]
JSON_KEYS = {"track", "vehicle", "length_m", "line_length_m", "lap_time_s", "standing_lap_time_s",
             "max_speed_mps", "min_speed_mps"}

#: Reference lap times [s] (flying, standing) of the built-in circuits, margin 0.5 m,
#: grid step 2 m. A change beyond 0.5% means the line, the speed model or a preset moved:
#: update these numbers (and the README table) on purpose, not by accident.
RECORDED = {
    ("oval", "gt3"): (29.091, 33.715),
    ("club", "gt3"): (56.412, 60.036),
    ("technical", "gt3"): (70.691, 75.862),
    ("flowing", "gt3"): (82.220, 88.305),
    ("oval", "road"): (41.949, 48.427),
    ("club", "road"): (75.650, 80.976),
    ("technical", "road"): (95.182, 102.958),
    ("flowing", "road"): (114.534, 123.105),
}


def _usable(track, vehicle, s, margin=0.5):
    wl, wr = track.width_at(s)
    hw = 0.5 * vehicle.width_m
    return -(wr - hw - margin), wl - hw - margin


# --------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("veh", PRESETS)
def test_ring_line_hugs_the_outer_edge_and_speed_is_the_closed_form(ring100, veh):
    """On a ring the largest circle inside the usable band is its outer edge (the right
    side of a left-hand ring); the profile is flat at the axle-limited cornering speed."""
    vp = load_vehicle(veh)
    lap = reference_lap(ring100, vp)
    outer = -(8.0 - 0.5 * vp.width_m - 0.5)
    np.testing.assert_allclose(lap.d_m, outer, atol=1e-3)
    r_line = 100.0 - outer
    np.testing.assert_allclose(1.0 / lap.kappa, r_line, rtol=2e-3)
    v = lap.v_mps
    assert np.ptp(v) / np.mean(v) < 1e-3
    assert np.mean(v) == pytest.approx(vp.grip_limited_speed(r_line), rel=0.01)
    assert lap.line_length_m == pytest.approx(2 * math.pi * r_line, rel=1e-3)
    assert lap.lap_time_s == pytest.approx(lap.line_length_m / np.mean(v), rel=1e-3)


@pytest.mark.parametrize("veh", PRESETS)
def test_top_speed_on_a_long_straight(big_ring, veh):
    vp = load_vehicle(veh)
    lap = reference_lap(big_ring, vp)
    assert np.min(lap.v_mps) == pytest.approx(vp.top_speed_mps, rel=0.01)
    # from rest on a 6 km straight: monotone, never above, and reaches the top speed
    s = np.arange(0.0, 6000.0, 2.0)
    v = speed_profile(s, np.zeros_like(s), vp, closed=False, v_start=0.0)
    assert v[0] == 0.0 and np.all(np.diff(v) >= 0)
    assert v.max() <= vp.top_speed_mps * (1 + 1e-9)
    assert v[-1] == pytest.approx(vp.top_speed_mps, rel=0.01)


def test_launch_and_braking_match_constant_acceleration():
    """No aero, no rolling resistance, no load transfer, no ABS or brake-force limits, a
    brake balance equal to the weight split and equal grip front and rear: braking is mu g on every axle, so the
    backward pass is v^2 = 2 mu g x; launching is limited by the rear axle's grip."""
    vp = load_vehicle("road").replace(drag_area_m2=0.0, lift_area_m2=0.0, rolling_resistance=0.0, cg_height_m=0.0,
                                      rear_grip_ratio=1.0, brake_balance_front=1.45 / 2.7,
                                      max_brake_force_n=1e6, max_drive_force_n=1e6, max_power_w=1e9,
                                      abs_limit=1.0, rear_brake_limit=1.0)
    s = np.arange(0.0, 200.0, 0.5)
    v = speed_profile(s, np.zeros_like(s), vp, closed=False, v_start=30.0, v_end=0.0)
    x_stop = s[-1] - s
    np.testing.assert_allclose(v[x_stop < 40], np.sqrt(2 * vp.mu * G * x_stop[x_stop < 40]), rtol=1e-6, atol=1e-6)
    v = speed_profile(s, np.zeros_like(s), vp, closed=False, v_start=0.0)
    a_rear = vp.mu * G * vp.lf_m / vp.wheelbase_m  # drive on the rear axle only
    np.testing.assert_allclose(v, np.sqrt(2 * a_rear * s), rtol=1e-6)


@pytest.mark.parametrize("veh", PRESETS)
def test_corner_speed_is_the_axle_limited_closed_form(veh):
    vp = load_vehicle(veh)
    radii = np.array([15.0, 40.0, 100.0, 250.0])
    v = corner_speed(1.0 / radii, vp)
    want = [min(vp.grip_limited_speed(r), vp.top_speed_mps) for r in radii]
    np.testing.assert_allclose(v, want, rtol=1e-6)
    assert corner_speed([0.0], vp)[0] == pytest.approx(vp.top_speed_mps)


# --------------------------------------------------------------------------- the line
@pytest.mark.parametrize("name", builtin_track_names())
def test_racing_line_stays_in_bounds_and_lowers_curvature(name):
    track = load_track(name)
    vp = load_vehicle("gt3")
    lap = reference_lap(track, vp)
    lo, hi = _usable(track, vp, lap.s_m)
    assert np.all(lap.d_m >= lo - 1e-6) and np.all(lap.d_m <= hi + 1e-6)
    assert lap.s_m[0] == 0.0 and np.all(np.diff(lap.s_m) > 0) and lap.s_m[-1] < track.length
    x0, y0, _ = track.frenet_to_xy(lap.s_m, 0.0)
    k_line = np.sum(menger_curvature(lap.x_m, lap.y_m) ** 2)
    k_centre = np.sum(menger_curvature(x0, y0) ** 2)
    assert k_line < 0.95 * k_centre
    # it uses the width: it touches the edges and swings across a good part of the track
    assert np.any(lap.d_m > hi - 0.05) or np.any(lap.d_m < lo + 0.05)
    assert np.ptp(lap.d_m) > 0.3 * np.min(hi - lo)
    # the world points are the Frenet points, and the spline curvature agrees with the chain's
    x, y, _ = track.frenet_to_xy(lap.s_m, lap.d_m)
    np.testing.assert_allclose(np.c_[lap.x_m, lap.y_m], np.c_[x, y], atol=1e-9)
    np.testing.assert_allclose(lap.kappa, menger_curvature(lap.x_m, lap.y_m), atol=2e-3)


def test_racing_line_rejects_bad_arguments(ring100):
    with pytest.raises(ConfigError, match="step_m"):
        racing_line(ring100, half_width_m=1.0, step_m=0.0)
    with pytest.raises(ConfigError, match="too coarse"):
        racing_line(ring100, half_width_m=1.0, step_m=100.0)
    with pytest.raises(ConfigError, match="margin_m"):
        racing_line(ring100, half_width_m=1.0, margin_m=-1.0)
    with pytest.raises(ConfigError, match="iterations"):
        racing_line(ring100, half_width_m=1.0, iterations=0)


def test_narrow_track_line_stays_in_the_middle():
    track = ring_track(60.0, 1.2)  # 2.4 m wide: less than a gt3 plus margins
    s, d = racing_line(track, half_width_m=1.0, margin_m=0.5)
    np.testing.assert_allclose(d, 0.0, atol=1e-9)


def test_banded_solver_matches_dense():
    rng = np.random.default_rng(3)
    m = 23
    a_m, a_0, a_p = rng.normal(size=m), rng.normal(size=m) + 3.0, rng.normal(size=m)
    lsq = _CyclicTridiagLSQ(a_m, a_0, a_p, rng.normal(size=m))
    A = np.zeros((m, m))
    for i in range(m):
        A[i, (i - 1) % m] += a_m[i]
        A[i, i] += a_0[i]
        A[i, (i + 1) % m] += a_p[i]
    x = rng.normal(size=m)
    np.testing.assert_allclose(lsq.apply(x), A @ x, atol=1e-12)
    np.testing.assert_allclose(lsq.apply_t(x), A.T @ x, atol=1e-12)
    extra = rng.uniform(0.1, 1.0, size=m)
    rhs = rng.normal(size=m)
    np.testing.assert_allclose(lsq.solve(extra, rhs), np.linalg.solve(A.T @ A + np.diag(extra), rhs), rtol=1e-9)
    assert _band_cholesky_solve(np.array([[4.0, 9.0]]), np.array([2.0, 3.0])) == pytest.approx([0.5, 1 / 3])


def test_box_least_squares_satisfies_kkt():
    """The interior-point solution is optimal: zero gradient on free variables, the
    gradient pushing outwards on the active bounds."""
    rng = np.random.default_rng(5)
    m = 40
    lsq = _CyclicTridiagLSQ(rng.normal(size=m), rng.normal(size=m) + 2.0, rng.normal(size=m), 3 * rng.normal(size=m))
    lo, hi = -np.full(m, 0.3), np.full(m, 0.5)
    x = _box_least_squares(lsq, lo, hi, ridge=0.0, x_ref=np.zeros(m))
    grad = 2 * lsq.apply_t(lsq.apply(x) + lsq.b)
    at_lo, at_hi = x < lo + 1e-6, x > hi - 1e-6
    free = ~(at_lo | at_hi)
    assert at_lo.any() and at_hi.any() and free.any()
    assert np.all(np.abs(grad[free]) < 1e-5 * np.max(np.abs(grad)))
    assert np.all(grad[at_lo] > -1e-6) and np.all(grad[at_hi] < 1e-6)


# --------------------------------------------------------------------------- laps
@pytest.mark.parametrize(("name", "veh"), sorted(RECORDED))
def test_reference_lap_times_are_stable(name, veh):
    lap = reference_lap(load_track(name), veh)
    flying, standing = RECORDED[(name, veh)]
    assert lap.lap_time_s == pytest.approx(flying, rel=0.005)
    assert lap.standing_lap_time_s == pytest.approx(standing, rel=0.005)
    assert lap.standing_lap_time_s > lap.lap_time_s
    # the flying lap is the integral of the profile, and the profile respects the car
    assert lap.lap_time_s == pytest.approx(lap_time(lap.line_s_m, lap.v_mps, lap_length_m=lap.line_length_m))
    vp = load_vehicle(veh)
    assert np.all(lap.v_mps <= corner_speed(lap.kappa, vp) + 1e-9)
    assert lap.line_length_m / lap.lap_time_s < lap.v_mps.max()


def test_standing_lap_costs_the_launch(ring100):
    """On a ring (constant speed v) the standing lap is the launch over the grid gap plus
    the acceleration to v: slower than the flying lap by less than the time to reach v."""
    vp = load_vehicle("gt3")
    lap = reference_lap(ring100, vp)
    v = float(np.mean(lap.v_mps))
    extra = lap.standing_lap_time_s - lap.lap_time_s
    t_accel_max = v / 2.0 + GRID_GAP_M / 1.0  # generous: 2 m/s^2 at least, the gap at >= 1 m/s
    assert GRID_GAP_M / v < extra < t_accel_max


def test_speed_at_and_offset_at_are_periodic(ring100):
    lap = reference_lap(load_track("club"), "gt3")
    np.testing.assert_allclose(lap.speed_at(lap.s_m), lap.v_mps)
    np.testing.assert_allclose(lap.offset_at(lap.s_m + lap.length_m), lap.d_m, atol=1e-9)
    mid = 0.5 * (lap.s_m[3] + lap.s_m[4])
    assert lap.speed_at(mid) == pytest.approx(0.5 * (lap.v_mps[3] + lap.v_mps[4]))
    # between the last point and the lap's end it interpolates towards point 0
    end = 0.5 * (lap.s_m[-1] + lap.length_m)
    assert lap.speed_at(end) == pytest.approx(0.5 * (lap.v_mps[-1] + lap.v_mps[0]))


def test_reference_lap_is_cached_and_read_only():
    track = load_track("oval")
    lap = reference_lap(track, "gt3")
    assert reference_lap(track, load_vehicle("gt3")) is lap
    assert reference_lap(track, "gt3", margin_m=1.0) is not lap
    with pytest.raises(ValueError):
        lap.v_mps[0] = 1.0
    d = lap.to_dict()
    assert set(d) == JSON_KEYS
    assert d["max_speed_mps"] == pytest.approx(lap.v_mps.max(), abs=1e-3)


def test_wider_margin_is_slower():
    track = load_track("club")
    assert reference_lap(track, "gt3", margin_m=2.0).lap_time_s > reference_lap(track, "gt3").lap_time_s


def test_speed_profile_rejects_bad_input():
    s = np.arange(10.0)
    with pytest.raises(ConfigError, match="open line"):
        speed_profile(s, np.zeros(10), "gt3", v_start=0.0)
    with pytest.raises(ConfigError, match="increase"):
        speed_profile(s[::-1], np.zeros(10), "gt3")
    with pytest.raises(ConfigError, match="shape"):
        speed_profile(s, np.zeros(9), "gt3")
    with pytest.raises(ConfigError, match="unknown vehicle"):
        speed_profile(s, np.zeros(10), "kart")


# --------------------------------------------------------------------------- CLI
def test_cli_json(capsys):
    assert main(["reference", "--track", "oval", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == JSON_KEYS
    lap = reference_lap(load_track("oval"), "gt3")
    assert out["track"] == "oval" and out["vehicle"] == "gt3"
    assert out["lap_time_s"] == pytest.approx(lap.lap_time_s, abs=1e-3)
    assert out["length_m"] == pytest.approx(load_track("oval").length, abs=1e-3)


def test_cli_summary_line_csv_and_plot(capsys, tmp_path):
    csv = tmp_path / "line.csv"
    png = tmp_path / "ref.png"
    assert main(["reference", "--track", "oval", "--vehicle", "road", "--line", str(csv), "--plot", str(png)]) == 0
    out = capsys.readouterr()
    assert "flying lap" in out.out and "standing lap" in out.out
    assert "computing" in out.err
    lines = csv.read_text().splitlines()
    assert lines[0] == "s_m,x_m,y_m,v_mps"
    data = np.loadtxt(csv, delimiter=",", skiprows=1)
    lap = reference_lap(load_track("oval"), "road")
    assert data.shape == (lap.v_mps.shape[0], 4)
    assert np.all(np.diff(data[:, 0]) > 0)
    np.testing.assert_allclose(data[:, 3], lap.v_mps, atol=1e-3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--track", "nowhere"], "unknown track"),
    (["--track", "oval", "--vehicle", "kart"], "unknown vehicle"),
    (["--track", "oval", "--line", "/nonexistent-dir/line.csv"], "does not exist"),
    (["--track", "oval", "--plot", "/nonexistent-dir/p.png"], "does not exist"),
    (["--track", "oval", "--margin", "-1"], "--margin"),
    (["--track", "oval", "--step", "0"], "step_m"),
])
def test_cli_bad_input_exits_2(capsys, args, message):
    assert main(["reference", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err

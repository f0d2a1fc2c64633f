"""Tracks: geometry, Frenet projection, built-in circuits, procedural generation, CSV
files and the ``racing tracks`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from racing.errors import TrackError
from racing.procgen import corridor_clearance, generate_track, required_clearance_m
from racing.track import build_track, polyline_self_intersects
from racing.trackio import (
    CSV_HEADER,
    EXAMPLE_CSV,
    builtin_track_names,
    load_track,
    read_track_csv,
    save_track_csv,
)

BUILTINS = ["oval", "club", "technical", "flowing"]
SAMPLE_SEEDS = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 999]


def circle_track(radius, ds=1.0, n=720, width=8.0):
    th = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return build_track(f"circle{radius:g}", np.c_[radius * np.cos(th), radius * np.sin(th)], width / 2, width / 2, ds=ds)


def wrap_diff(a, b, length):
    return (a - b + 0.5 * length) % length - 0.5 * length


# --------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("radius", [15.0, 100.0, 1000.0])
def test_circle_curvature_and_length(radius):
    t = circle_track(radius)
    assert t.length == pytest.approx(2.0 * math.pi * radius, rel=1e-3)
    assert np.all(np.abs(t.kappa * radius - 1.0) < 5e-3)  # anticlockwise: left turn, kappa > 0
    assert t.min_radius_m == pytest.approx(radius, rel=5e-3)
    assert len(t.corners) == (1 if radius < 200 else 0)


def test_circle_frenet_projection_round_trip():
    """Points at known (s, d) come back within 1 cm: global search, a stale hint behind
    or ahead, and across the s=0 wrap. (Polyline Frenet coordinates deviate from the
    exact ones by at most |d| ds / (2 R); here 3 * 0.5 / 300 = 5 mm.)"""
    R = 150.0
    t = circle_track(R, ds=0.5)
    L = t.length
    rng = np.random.default_rng(1)
    s_all = np.concatenate([rng.uniform(0.0, L, 200), [0.0, 0.05, 0.3, L - 0.3, L - 0.05, L - 1e-6]])
    d_all = np.concatenate([rng.uniform(-3.0, 3.0, 200), [0.0, 2.5, -2.5, 1.0, -3.0, 2.9]])
    for s, d in zip(s_all, d_all):
        th = s / R
        px, py = (R - d) * math.cos(th), (R - d) * math.sin(th)  # left of an anticlockwise circle is inwards
        i_true = int(s / t.ds) % t.n
        for hint in (-1, (i_true - 40) % t.n, (i_true + 25) % t.n, i_true):
            s2, d2, i2 = t.project(px, py, hint)
            assert abs(wrap_diff(s2, s, L)) < 0.01, (s, d, hint, s2)
            assert abs(d2 - d) < 0.01, (s, d, hint, d2)
            assert 0 <= i2 < t.n


def test_frenet_round_trip_on_builtin():
    t = load_track("technical")
    rng = np.random.default_rng(2)
    s = np.concatenate([rng.uniform(0, t.length, 300), [0.0, 0.2, t.length - 0.2]])
    d = rng.uniform(-5.0, 5.0, s.size)
    x, y, _ = t.frenet_to_xy(s, d)
    for k in range(s.size):
        for hint in (-1, (int(s[k] / t.ds) - 3) % t.n, (int(s[k] / t.ds) + 2) % t.n):
            s2, d2, _ = t.project(x[k], y[k], hint)
            x2, y2, _ = t.frenet_to_xy(s2, d2)
            assert math.hypot(x2 - x[k], y2 - y[k]) < 0.01
            assert abs(wrap_diff(s2, s[k], t.length)) < 0.3 and abs(d2 - d[k]) < 0.05


# --------------------------------------------------------------------------- built-ins
def test_builtin_names():
    assert builtin_track_names() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_valid(name):
    t = load_track(name)
    assert t is load_track(name)  # cached
    assert t.name == name and t.source == "built-in" and t.meta["description"]
    assert t.min_radius_m >= 12.0
    assert not polyline_self_intersects(np.c_[t.x, t.y])
    ok, dmin, sa, sb = corridor_clearance(t)
    assert ok, f"{name}: corridors at s={sa:.0f} and s={sb:.0f} m are {dmin:.1f} m apart"
    # start/finish on a straight with at least 150 m of straight before it
    k = int(150.0 / t.ds)
    assert np.max(np.abs(t.kappa[-k:])) < 1e-3 and abs(t.kappa[0]) < 1e-3
    assert t.num_sectors == 3 and t.sector_starts_s[0] == 0.0
    assert all(b - a > 0.15 * t.length for a, b in zip(t.sector_starts_s, t.sector_starts_s[1:] + (t.length,)))
    # closed smoothly: no heading or position jump across s=0
    assert math.hypot(t.x[0] - t.x[-1], t.y[0] - t.y[-1]) == pytest.approx(t.ds, rel=0.01)
    assert abs(np.sum(t.kappa) * t.ds) == pytest.approx(2.0 * math.pi, rel=1e-3)


def test_builtin_character():
    oval, club, tech, flow = (load_track(n) for n in BUILTINS)
    # oval: ~1.6-2 km, two constant-radius turns of >= 120 m, ~15 m wide
    assert 1600 <= oval.length <= 2000
    assert len(oval.corners) == 2 and oval.min_radius_m >= 120.0
    assert all(150.0 < abs(c["turn_deg"]) <= 180.0 for c in oval.corners)
    assert np.allclose(oval.w_left + oval.w_right, 15.0)
    # club: short, 7-9 corners, 10-12 m wide
    assert 1800 <= club.length <= 2400 and 7 <= len(club.corners) <= 9
    assert 10.0 <= (club.w_left + club.w_right).min() <= (club.w_left + club.w_right).max() <= 12.0
    # technical: 3-3.8 km, two hairpins (radius 12-20 m, turning >= 120 deg), a chicane
    assert 3000 <= tech.length <= 3800 and tech.min_radius_m < 25.0
    hairpins = [c for c in tech.corners if 12.0 <= c["min_radius_m"] <= 20.0 and abs(c["turn_deg"]) >= 120.0]
    assert len(hairpins) >= 2
    cs = tech.corners
    chicanes = [
        (a, b, c) for a, b, c in zip(cs, cs[1:], cs[2:])
        if a["direction"] != b["direction"] != c["direction"] and c["apex_s"] - a["apex_s"] < 100.0
    ]
    assert chicanes
    assert 11.0 <= (tech.w_left + tech.w_right).min() <= (tech.w_left + tech.w_right).max() <= 13.0
    # flowing: 4.5-5.5 km, mostly 80-400 m sweepers, a couple of slower corners, long straights
    assert 4500 <= flow.length <= 5500
    radii = np.array([c["min_radius_m"] for c in flow.corners])
    assert np.mean((radii >= 80.0) & (radii <= 400.0)) >= 0.7
    assert 1 <= np.sum(radii < 80.0) <= 3
    straight = np.abs(flow.kappa) < 1e-3
    runs, cur = [], 0
    for v in np.concatenate([straight, straight]):  # twice round: a run may cross s=0
        cur = cur + 1 if v else 0
        runs.append(cur)
    assert max(runs) * flow.ds > 800.0
    assert 12.0 <= (flow.w_left + flow.w_right).min() <= (flow.w_left + flow.w_right).max() <= 14.0


def test_wall_margin_option():
    t = load_track("club", wall_margin_m=3.0)
    assert t.wall_margin_m == 3.0
    assert load_track("club").wall_margin_m == 6.0
    with pytest.raises(TrackError, match="wall margin"):
        load_track("club", wall_margin_m=-1.0)


# --------------------------------------------------------------------------- procgen
def test_procgen_deterministic_and_varied():
    a, b = generate_track(7), generate_track(7)
    for f in ("x", "y", "kappa", "w_left", "w_right"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert a.name == "random:7" and a.source == "random:7"
    assert load_track("random:7") is load_track("random:7")
    assert np.array_equal(load_track("random:7").x, a.x)
    lengths = {round(generate_track(s).length, 3) for s in range(8)}
    assert len(lengths) == 8
    c = generate_track(8)
    assert a.n != c.n or not np.allclose(a.x, c.x)


@pytest.mark.parametrize("seed", SAMPLE_SEEDS)
def test_procgen_valid(seed):
    t = generate_track(seed)
    assert t.min_radius_m >= 12.0
    assert not polyline_self_intersects(np.c_[t.x, t.y])
    ok, dmin, _, _ = corridor_clearance(t)
    assert ok and dmin >= required_clearance_m(t)
    assert 1500.0 <= t.length <= 5500.0
    w = t.w_left + t.w_right
    assert 10.0 - 1e-9 <= w.min() and w.max() <= 14.0 + 1e-9
    assert len(t.corners) >= 5
    k = int(150.0 / t.ds)
    assert np.max(np.abs(t.kappa[-k:])) < 1e-3


def test_procgen_options():
    t = generate_track(3, length_m=2500.0, width_m=12.0)
    assert 2100.0 <= t.length <= 2900.0
    assert np.allclose(t.w_left + t.w_right, 12.0)
    assert generate_track(3, wall_margin_m=2.0).wall_margin_m == 2.0
    with pytest.raises(TrackError, match="unknown procedural track option"):
        generate_track(3, lenght_m=2000)
    with pytest.raises(TrackError, match="non-negative integer"):
        generate_track(-1)


def test_corridor_check_detects_overlap():
    # a paper clip: two 300 m legs joined by 180-degree turns of radius 12 m, so the legs
    # are 24 m apart: 12 m of tarmac + 2 x 6 m run-off + 3 m do not fit
    pts = [(x, 0.0) for x in np.arange(0.0, 300.0, 2.0)]
    pts += [(300.0 + 12.0 * np.sin(a), 12.0 - 12.0 * np.cos(a)) for a in np.linspace(0, np.pi, 20)[1:-1]]
    pts += [(x, 24.0) for x in np.arange(300.0, 0.0, -2.0)]
    pts += [(-12.0 * np.sin(a), 12.0 + 12.0 * np.cos(a)) for a in np.linspace(0, np.pi, 20)[1:-1]]
    t = build_track("clip", np.asarray(pts), 6.0, 6.0)
    ok, dmin, _, _ = corridor_clearance(t)
    assert not ok and dmin < required_clearance_m(t)
    assert corridor_clearance(circle_track(100.0))[0]


# --------------------------------------------------------------------------- CSV
def test_csv_round_trip(tmp_path):
    for spec in ("club", "random:4"):
        t = load_track(spec)
        p = save_track_csv(t, tmp_path / f"{spec.replace(':', '_')}.csv")
        assert p.read_text().splitlines()[0] == CSV_HEADER
        xy, wr, wl, lines = read_track_csv(p)
        assert abs(np.mean(np.hypot(*np.diff(xy, axis=0).T)) - 5.0) < 0.1
        u = load_track(str(p))
        assert u.name == p.stem and u.source == str(p)
        assert u.length == pytest.approx(t.length, rel=5e-3)
        assert len(u.corners) == len(t.corners)
        assert u.min_radius_m == pytest.approx(t.min_radius_m, rel=0.2)  # smoothing spreads the tightest peaks
        dev = [abs(t.project(x, y)[1]) for x, y in zip(u.x[::7], u.y[::7])]
        assert max(dev) < 1.0
        assert np.allclose(np.sort(u.w_left + u.w_right)[[0, -1]], np.sort(t.w_left + t.w_right)[[0, -1]], atol=0.05)
        assert load_track(p).length == u.length  # a pathlib.Path works too


def test_example_csv_ships_and_loads():
    assert EXAMPLE_CSV.is_file()
    t = load_track(str(EXAMPLE_CSV))
    assert 2000 <= t.length <= 5000 and t.min_radius_m >= 12.0
    assert corridor_clearance(t)[0]


def _circle_rows(n=60, radius=50.0):
    th = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return [f"{radius * math.cos(a):.3f},{radius * math.sin(a):.3f},5.0,5.0" for a in th]


def _write(tmp_path, lines, name="bad.csv"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def test_csv_header_variants_accepted(tmp_path):
    rows = _circle_rows()
    ref = load_track(_write(tmp_path, [CSV_HEADER] + rows, "a.csv"))
    for header in ("#x_m, y_m, w_tr_right_m, w_tr_left_m", "x_m,y_m,w_tr_right_m,w_tr_left_m", "# X_M , Y_M,W_TR_RIGHT_M,W_TR_LEFT_M"):
        t = load_track(_write(tmp_path, [header] + rows, "b.csv"))
        assert t.length == pytest.approx(ref.length)
    t = load_track(_write(tmp_path, rows, "noheader.csv"))  # no header: four numbers per row
    assert t.length == pytest.approx(ref.length)
    t = load_track(_write(tmp_path, [CSV_HEADER, ""] + rows[:30] + ["# a comment", ""] + rows[30:], "blank.csv"))
    assert t.length == pytest.approx(ref.length)


def _bad_cases():
    rows = _circle_rows()
    H = CSV_HEADER
    eight = [f"{100 * math.sin(a):.3f},{50 * math.sin(2 * a):.3f},5,5" for a in np.linspace(0.03, 2 * np.pi + 0.03, 80, endpoint=False)]
    sparse = list(rows)
    sparse.insert(20, "500.0,500.0,5,5")
    open_line = [f"{5.0 * k:.1f},0.0,5,5" for k in range(30)]
    return {
        # name: (lines, expected line, words in the message)
        "wrong_header": (["# x,y,right,left"] + rows, 1, ["header", "x_m,y_m,w_tr_right_m,w_tr_left_m"]),
        "text_header": (["a,b,c"] + rows, 1, ["header"]),
        "empty": ([""], None, ["empty"]),
        "columns": ([H] + rows[:5] + ["1.0,2.0,5.0"] + rows[5:], 7, ["expected 4 columns", "got 3"]),
        "extra_columns": ([H] + rows[:3] + ["1.0,2.0,5.0,5.0,9"] + rows[3:], 5, ["expected 4 columns", "got 5"]),
        "not_number": ([H] + rows[:9] + ["1.0,2.0,5.0,abc"] + rows[9:], 11, ["column w_tr_left_m", "'abc' is not a number"]),
        "empty_field": ([H] + rows[:2] + [",2.0,5.0,5.0"] + rows[2:], 4, ["column x_m", "not a number"]),
        "nan": ([H] + rows[:3] + ["nan,2.0,5.0,5.0"] + rows[3:], 5, ["column x_m", "not a finite number"]),
        "inf": ([H] + rows[:3] + ["1.0,inf,5.0,5.0"] + rows[3:], 5, ["column y_m", "not a finite number"]),
        "few_points": ([H] + _circle_rows(7), 8, ["at least 10", "got 7"]),
        "zero_width": ([H] + rows[:4] + ["50.0,1.0,0.0,5.0"] + rows[4:], 6, ["column w_tr_right_m", "positive"]),
        "negative_width": ([H] + rows[:4] + ["50.0,1.0,5.0,-2"] + rows[4:], 6, ["column w_tr_left_m", "positive"]),
        "duplicate": ([H] + rows[:12] + [rows[11]] + rows[12:], 14, ["repeats the previous point", "line 13"]),
        "closing_repeat": ([H] + rows + [rows[0]], len(rows) + 2, ["last point repeats the first point", "line 2"]),
        "self_intersection": ([H] + eight, None, ["crosses itself", "segment from line"]),
        "sparse": ([H] + sparse, 22, ["too sparse", "50 m"]),
        "not_closed": ([H] + open_line, 31, ["closed loop", "first point"]),
    }


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_csv_bad_files(tmp_path, case):
    lines, line, words = _bad_cases()[case]
    path = _write(tmp_path, lines)
    with pytest.raises(TrackError) as ei:
        load_track(path)
    msg = str(ei.value)
    assert msg.startswith(path), msg
    assert ei.value.path == path
    if line is not None:
        assert ei.value.line == line and f"line {line}:" in msg, msg
    elif case != "empty":
        assert ei.value.line is not None and f"line {ei.value.line}:" in msg
    for w in words:
        assert w in msg, msg


def test_csv_unreadable(tmp_path):
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(TrackError, match="not found") as ei:
        load_track(missing)
    assert str(ei.value).startswith(missing)
    with pytest.raises(TrackError, match="is a directory"):
        load_track(str(tmp_path) + "/")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 50)
    with pytest.raises(TrackError, match="not a text"):
        load_track(str(binary))


def test_bad_specs():
    with pytest.raises(TrackError, match=r"random:SEED"):
        load_track("random")
    with pytest.raises(TrackError, match="non-negative integer"):
        load_track("random:-3")
    with pytest.raises(TrackError, match="non-negative integer"):
        load_track("random:abc")
    with pytest.raises(TrackError) as ei:
        load_track("monza")
    assert all(n in str(ei.value) for n in BUILTINS)


# --------------------------------------------------------------------------- CLI
def test_cli_lists_builtins(capsys):
    from racing.cli import main

    assert main(["tracks"]) == 0
    out = capsys.readouterr().out
    for n in BUILTINS:
        assert n in out


def test_cli_json(capsys):
    from racing.cli import main

    assert main(["tracks", "--json", "oval", "random:5"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["oval", "random:5"]
    for r in rows:
        assert {"name", "length_m", "corners", "min_radius_m", "width_m"} <= set(r)
        assert len(r["width_m"]) == 2 and r["width_m"][0] <= r["width_m"][1]
    assert rows[0]["corners"] == 2
    assert main(["tracks", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == BUILTINS


def test_cli_bad_file(tmp_path, capsys):
    from racing.cli import main

    path = _write(tmp_path, [CSV_HEADER] + _circle_rows()[:5] + ["1,2,x,4"] + _circle_rows()[5:])
    assert main(["tracks", path]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    assert path in captured.err and "line 7" in captured.err and "column w_tr_right_m" in captured.err
    assert main(["tracks", "random"]) == 2
    assert "random:SEED" in capsys.readouterr().err

"""Top-down renderer: frames, car placement, camera, HUD, headless use, window errors, video."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from racing.errors import ConfigError, RacingError
from racing.render import (
    CAR_COLORS, FOCUS_COLOR, TopDownRenderer, format_lap_time, hud_from_sim, save_video,
)
from racing.sim import RaceSim

from conftest import ring_track

ROOT = Path(__file__).resolve().parents[1]


def color_mask(frame, color, tol=12):
    return np.all(np.abs(frame.astype(np.int64) - np.array(color)) <= tol, axis=-1)


@pytest.fixture
def sim3(ring100):
    sim = RaceSim(ring100, "gt3", num_races=1, cars_per_race=3)
    # car 0 (focus) at s = 0, car 1 a quarter lap on, car 2 half a lap on (left of centre)
    L = ring100.length
    sim.reset_race(0, s=[0.0, 0.25 * L, 0.5 * L], d=[0.0, 0.0, 3.0], speed=[20.0, 20.0, 20.0])
    return sim


@pytest.mark.parametrize("follow", [True, False])
def test_frame_shape_and_dtype(sim3, ring100, follow):
    r = TopDownRenderer(ring100, 320, 240, follow=follow)
    frame = r.draw(sim3, 0, 0)
    assert frame.shape == (240, 320, 3)
    assert frame.dtype == np.uint8
    assert frame.flags.writeable
    # the picture is not a blank: grass, asphalt and cars are all there
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 10


@pytest.mark.parametrize("follow", [True, False])
def test_cars_appear_where_they_are(sim3, ring100, follow):
    r = TopDownRenderer(ring100, 400, 400, follow=follow)
    frame = r.draw(sim3, 0, 0)
    for k, color in ((0, FOCUS_COLOR), (1, CAR_COLORS[1]), (2, CAR_COLORS[2])):
        u, v = r.world_to_pixel(sim3.x[k], sim3.y[k])
        if not (0 <= u < 400 and 0 <= v < 400):
            assert follow  # only the follow view may leave cars out of the picture
            continue
        mask = color_mask(frame, color)
        rows, cols = np.nonzero(mask)
        assert len(rows) >= 4, f"car {k} not drawn"
        # every pixel of that colour belongs to this car (or the focus ring around it)
        dist = np.hypot(cols - u, rows - v)
        assert dist.max() < 25.0, f"car {k} drawn {dist.max():.0f} px away from where it is"
        assert dist.min() < 3.0


def test_follow_camera_centres_on_focus_car(sim3, ring100):
    r = TopDownRenderer(ring100, 300, 200, follow=True, view_m=60.0)
    for focus in (0, 2):
        r.draw(sim3, 0, focus)
        u, v = r.world_to_pixel(sim3.x[focus], sim3.y[focus])
        assert abs(u - 150) <= 1.0 and abs(v - 100) <= 1.0
    assert r.scale == pytest.approx(200 / 60.0)


@pytest.mark.parametrize("follow", [True, False])
def test_frame_changes_when_a_car_moves(sim3, ring100, follow):
    r = TopDownRenderer(ring100, 256, 256, follow=follow)
    before = r.draw(sim3, 0, 1)
    # the focus car (1) drives on; the follow camera goes with it
    for _ in range(5):
        sim3.step(np.tile([0.0, 0.3], (3, 1)))
    after = r.draw(sim3, 0, 1)
    assert not np.array_equal(before, after)
    if not follow:
        rows, cols = np.nonzero(color_mask(after, FOCUS_COLOR))
        u, v = r.world_to_pixel(sim3.x[1], sim3.y[1])
        assert np.hypot(cols.mean() - u, rows.mean() - v) < 5.0


def test_inactive_cars_are_not_drawn(ring100):
    sim = RaceSim(ring100, "gt3", num_races=1, cars_per_race=2)
    sim.reset_race(0, s=[0.0, 100.0], d=[0.0, 0.0], active=[1, 0])
    frame = TopDownRenderer(ring100, 300, 300, follow=False).draw(sim, 0, 0)
    assert color_mask(frame, FOCUS_COLOR).any()
    assert not color_mask(frame, CAR_COLORS[1]).any()


def test_hud(sim3, ring100):
    r = TopDownRenderer(ring100, 320, 320, follow=True)
    plain = r.draw(sim3, 0, 0)
    hud = hud_from_sim(sim3, 0, 0)
    assert hud["speed_kmh"] == pytest.approx(72.0)
    assert hud["lap"] == 1 and hud["num_cars"] == 3 and hud["position"] in (1, 2, 3)
    with_hud = r.draw(sim3, 0, 0, hud)
    differs = np.any(plain != with_hud, axis=-1)
    rows, cols = np.nonzero(differs)
    assert len(rows) > 100
    assert rows.max() < 160 and cols.max() < 200  # the HUD sits in the top-left corner
    lines = TopDownRenderer.hud_lines({"speed_kmh": 201.4, "lap": 2, "num_laps": 5, "position": 3, "num_cars": 8,
                                       "lap_time_s": 62.5, "last_lap_s": None, "reward": 0.25})
    assert lines == [" 201 km/h", "Lap 2/5   P3/8", "Time  1:02.500", "Last  -:--.---", "reward: 0.25"]


def test_format_lap_time():
    assert format_lap_time(83.4567) == "1:23.457"
    assert format_lap_time(9.0) == "0:09.000"
    assert format_lap_time(None) == format_lap_time(float("nan")) == "-:--.---"


def test_switches_track_with_the_race(ring100):
    other = ring_track(60.0, 6.0)
    sim = RaceSim([ring100, other], "gt3", num_races=2, cars_per_race=1)
    r = TopDownRenderer(ring100, 200, 200, follow=False)
    a = r.draw(sim, 0, 0)
    b = r.draw(sim, 1, 0)
    assert r.track is other
    assert not np.array_equal(a, b)


def test_bad_arguments(sim3, ring100):
    with pytest.raises(ConfigError, match="width"):
        TopDownRenderer(ring100, 0, 100)
    with pytest.raises(ConfigError, match="view_m"):
        TopDownRenderer(ring100, view_m=-5.0)
    r = TopDownRenderer(ring100, 64, 64)
    with pytest.raises(ConfigError, match="focus_car"):
        r.draw(sim3, 0, 3)
    with pytest.raises(ConfigError, match="race"):
        r.draw(sim3, 1, 0)


def test_draw_is_headless_and_needs_no_pygame(tmp_path):
    """Drawing and saving a GIF never import pygame (a window would break headless training)."""
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "pygame" or name.startswith("pygame."):
            raise ImportError("pygame blocked by the test")
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(ROOT / 'tests')!r})
from conftest import ring_track
from racing.sim import RaceSim
from racing.render import TopDownRenderer, save_video
t = ring_track(80.0, 8.0)
sim = RaceSim(t, "gt3")
r = TopDownRenderer(t, 64, 64)
frames = [r.draw(sim, 0, 0, {{"speed_kmh": 0.0}}) for _ in range(2)]
save_video(frames, {str(tmp_path / 'a.gif')!r})
assert "pygame" not in sys.modules
print("ok")
"""
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert (tmp_path / "a.gif").exists()


def test_show_without_display_says_what_to_do(sim3, ring100, monkeypatch):
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    r = TopDownRenderer(ring100, 64, 64)
    frame = r.draw(sim3)
    with pytest.raises(RacingError, match="rgb_array"):
        r.show(frame)
    assert not r.window_open


def test_show_with_dummy_video_driver(sim3, ring100, monkeypatch):
    pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    r = TopDownRenderer(ring100, 64, 48)
    with pytest.raises(RacingError, match="draw"):
        r.show()  # nothing drawn yet
    r.draw(sim3)
    assert r.show() is True
    assert r.window_open
    r.close()
    assert not r.window_open


def test_save_gif(tmp_path, sim3, ring100):
    from PIL import Image

    r = TopDownRenderer(ring100, 96, 64, follow=False)
    frames = []
    for _ in range(3):
        frames.append(r.draw(sim3))
        sim3.step(np.tile([0.0, 1.0], (3, 1)))
    out = save_video(frames, tmp_path / "lap.gif", fps=5)
    assert out == tmp_path / "lap.gif"
    with Image.open(out) as im:
        assert im.size == (96, 64)
        assert im.n_frames == 3
        assert im.info["duration"] == 200


def test_save_mp4_or_gif_fallback(tmp_path, sim3, ring100):
    frames = [TopDownRenderer(ring100, 64, 64).draw(sim3)] * 2
    try:
        import imageio_ffmpeg  # noqa: F401
        have_mp4 = True
    except ImportError:
        have_mp4 = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = save_video(frames, tmp_path / "lap.mp4")
    if have_mp4:
        assert out == tmp_path / "lap.mp4" and out.stat().st_size > 0
    else:
        assert out == tmp_path / "lap.gif" and out.exists()
        assert any("imageio" in str(w.message) for w in caught)


def test_save_video_bad_input(tmp_path):
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ConfigError, match="format"):
        save_video([frame], tmp_path / "a.txt")
    with pytest.raises(ConfigError, match="no frames"):
        save_video([], tmp_path / "a.gif")
    with pytest.raises(ConfigError, match="frame 1"):
        save_video([frame, np.zeros((9, 8, 3), dtype=np.uint8)], tmp_path / "a.gif")
    with pytest.raises(ConfigError, match="uint8"):
        save_video([frame.astype(np.float32)], tmp_path / "a.gif")
    with pytest.raises(ConfigError, match="directory"):
        save_video([frame], tmp_path / "missing" / "a.gif")

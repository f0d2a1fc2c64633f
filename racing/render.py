"""Top-down rendering of a race: a headless ``rgb_array`` renderer and an optional window.

:class:`TopDownRenderer` draws one race of a :class:`racing.sim.RaceSim` into an
``(H, W, 3)`` ``uint8`` array: grass, run-off (between each track edge and its wall), the
asphalt ribbon, red/white kerbs in corners, white edge lines, walls, a chequered
start/finish line, faint sector boundaries, every active car of the race as an oriented
rectangle (the focus car in gold with a white outline, the others in distinct colours, a
dark windscreen marking the front) and a HUD built from a dict.

Two views:

* **follow** (default): north-up camera centred on the focus car, ``view_m`` metres
  (default :data:`DEFAULT_FOLLOW_VIEW_M`) across the shorter side of the image;
* **whole track** (``follow=False``): the bounding box of the walls fitted into the image
  (or a fixed ``view_m`` window around its centre).

Speed: the static track layer is rasterised once per track and scale, lazily, in square
tiles of :data:`TILE_PX` pixels (2x supersampled, then box-filtered, so edges are
anti-aliased) kept in an LRU cache; a frame pastes the tiles it overlaps and draws only the
cars and the HUD on top. Only the part of the track the camera visits is ever rasterised,
so memory stays small on long circuits.

Nothing here opens a window: only :meth:`TopDownRenderer.show` imports pygame (lazily). The
module imports without pillow or pygame; pillow is imported when a renderer is built.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

import numpy as np

from racing.errors import ConfigError, RacingError

#: Default width of the follow camera's window [m] (across the shorter image side).
DEFAULT_FOLLOW_VIEW_M = 180.0
#: Side of a cached tile of the static track layer [px].
TILE_PX = 256
#: Supersampling factor of the static layer (anti-aliasing).
SUPERSAMPLE = 2
#: Most tiles kept in the cache (256 px RGB tiles: ~0.2 MB each).
MAX_TILES = 400
#: A car is never drawn shorter than this [px] (whole-track views of long circuits).
MIN_CAR_PX = 9.0
#: Kerbs are painted where the centreline radius is below this [m].
KERB_RADIUS_M = 150.0
KERB_WIDTH_M = 1.0  # [m]
KERB_STRIPE_M = 2.5  # [m] length of one red or white stripe
EDGE_LINE_M = 0.35  # [m] width of the white edge lines
WALL_LINE_M = 1.0  # [m] drawn thickness of a wall
CHEQUER_M = 1.0  # [m] square of the start/finish chequer

GRASS = (64, 118, 56)
RUNOFF = (176, 164, 124)
ASPHALT = (62, 63, 68)
KERB_RED = (204, 40, 36)
KERB_WHITE = (236, 236, 236)
EDGE_LINE = (232, 232, 232)
WALL = (222, 222, 228)
SECTOR_LINE = (150, 140, 88)
FOCUS_COLOR = (255, 200, 0)
#: Colours of the other cars, by car index within the race (cycled).
CAR_COLORS = (
    (230, 50, 50), (40, 120, 240), (250, 130, 20), (180, 70, 220), (0, 200, 200), (240, 90, 170),
    (130, 220, 60), (250, 250, 250), (140, 100, 60), (90, 90, 255), (255, 150, 150), (20, 20, 20),
)


def format_lap_time(t_s) -> str:
    """``m:ss.sss`` for a time in seconds; ``-:--.---`` for None, NaN or inf."""
    if t_s is None:
        return "-:--.---"
    t = float(t_s)
    if not math.isfinite(t) or t < 0.0:
        return "-:--.---"
    m = int(t // 60.0)
    return f"{m}:{t - 60.0 * m:06.3f}"


def hud_from_sim(sim, race: int = 0, focus_car: int = 0) -> dict:
    """A HUD dict for car ``focus_car`` (index within the race) read from the simulator:
    ``speed_kmh``, ``lap`` (the lap being driven, 1-based), ``lap_time_s`` (None before
    timing starts), ``last_lap_s``, ``best_lap_s`` (valid laps only), ``position``,
    ``num_cars`` (active cars)."""
    from racing.dynamics import F_LAP_T0, I_ACTIVE, I_LAPS, I_TIMING

    c = race * sim.cars_per_race + focus_car
    timing = bool(sim.I[I_TIMING, c])
    laps = sim.laps[c]
    cars = list(sim.cars_of(race))
    return {
        "speed_kmh": float(sim.speed[c]) * 3.6,
        "lap": int(sim.I[I_LAPS, c]) + 1,
        "lap_time_s": float(sim.race_time[race] - sim.F[F_LAP_T0, c]) if timing else None,
        "last_lap_s": laps[-1].time_s if laps else None,
        "best_lap_s": sim.best_lap(c),
        "position": int(sim.positions()[race, focus_car]),
        "num_cars": int(np.sum(sim.I[I_ACTIVE, cars])),
    }


def _require_pil():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as exc:  # pragma: no cover - pillow is a core test dependency
        raise RacingError("rendering needs pillow: pip install 'racing-rl[render]' (or pip install pillow)") from exc
    return Image, ImageDraw, ImageFont


# =============================================================================== layer
class _TrackLayer:
    """The static picture of one track at one scale, rasterised lazily in tiles.

    Global pixel coordinates: ``u = (x - ox) * scale``, ``v = (oy - y) * scale`` (image
    rows grow southwards); tile ``(ti, tj)`` covers ``u in [ti T, (ti+1) T)``, ``v in
    [tj T, (tj+1) T)``.
    """

    def __init__(self, track, scale_px_per_m: float):
        from racing.sim import wall_distance

        self.track = track
        self.scale = float(scale_px_per_m)
        n = track.n
        i = np.arange(n)
        wl_wall = wall_distance(track.w_left, track.wall_margin_m, track.kappa)
        wr_wall = wall_distance(track.w_right, track.wall_margin_m, -track.kappa)
        left = track.xy_at(i, track.w_left)
        right = track.xy_at(i, -track.w_right)
        wall_l = track.xy_at(i, wl_wall)
        wall_r = track.xy_at(i, -wr_wall)
        allpts = np.concatenate([wall_l, wall_r])
        self.bbox_min = allpts.min(axis=0)  # [m]
        self.bbox_max = allpts.max(axis=0)  # [m]
        pad = 10.0  # [m]
        self.ox = float(self.bbox_min[0] - pad)
        self.oy = float(self.bbox_max[1] + pad)

        j = (i + 1) % n
        # filled polygons, in drawing order: (quads (k, 4, 2) [m], colours (k, 3))
        polys = []
        polys.append((np.stack([wall_l[i], wall_l[j], wall_r[j], wall_r[i]], axis=1), RUNOFF))
        polys.append((np.stack([left[i], left[j], right[j], right[i]], axis=1), ASPHALT))
        corner = np.abs(track.kappa) > 1.0 / KERB_RADIUS_M
        if corner.any():
            ci = i[corner]
            cj = j[corner]
            stripe = (np.floor(ci * track.ds / KERB_STRIPE_M).astype(np.int64) % 2)[:, None]
            colors = np.where(stripe == 0, np.array(KERB_RED), np.array(KERB_WHITE))
            kl = np.minimum(track.w_left + KERB_WIDTH_M, wl_wall - 0.2)
            kr = np.minimum(track.w_right + KERB_WIDTH_M, wr_wall - 0.2)
            out_l = track.xy_at(i, kl)
            out_r = track.xy_at(i, -kr)
            polys.append((np.stack([left[ci], left[cj], out_l[cj], out_l[ci]], axis=1), colors))
            polys.append((np.stack([right[ci], right[cj], out_r[cj], out_r[ci]], axis=1), colors))
        for s0 in track.sector_starts_s[1:]:
            polys.append((self._across(s0 - 0.25, s0 + 0.25, 1)[0], SECTOR_LINE))
        chequer, parity = self._across(-CHEQUER_M, CHEQUER_M, None)
        polys.append((chequer, np.where(parity[:, None] == 0, np.array((245, 245, 245)), np.array((15, 15, 15)))))
        self.polys = []
        for quads, color in polys:
            q = self._to_px(quads.reshape(-1, 2)).reshape(quads.shape)
            colors = np.broadcast_to(np.asarray(color, dtype=np.int64), (q.shape[0], 3))
            self.polys.append((q, q.min(axis=1), q.max(axis=1), [tuple(c) for c in colors.tolist()]))
        # closed polylines: (points (n, 2) [px], colour, width [px at supersampled scale])
        self.lines = []
        for pts, color, width_m, min_px in ((left, EDGE_LINE, EDGE_LINE_M, 1), (right, EDGE_LINE, EDGE_LINE_M, 1),
                                            (wall_l, WALL, WALL_LINE_M, 2), (wall_r, WALL, WALL_LINE_M, 2)):
            p = self._to_px(pts)
            seg_min = np.minimum(p, np.roll(p, -1, axis=0))
            seg_max = np.maximum(p, np.roll(p, -1, axis=0))
            width = max(min_px, int(round(width_m * self.scale * SUPERSAMPLE)))
            self.lines.append((p, seg_min, seg_max, color, width))
        self._tiles: OrderedDict = OrderedDict()
        self._grass_tile = None

    def _across(self, s0: float, s1: float, cells: int | None):
        """Quads spanning the track between arc lengths ``s0`` and ``s1`` [m]: one, or a
        chequer of ``CHEQUER_M`` squares (``cells=None``) with their colour parity."""
        tr = self.track
        wl, wr = tr.width_at(0.5 * (s0 + s1))
        wl, wr = float(wl), float(wr)
        rows = 1 if cells is not None else max(1, int(round((s1 - s0) / CHEQUER_M)))
        cols = cells if cells is not None else max(1, int(math.ceil((wl + wr) / CHEQUER_M)))
        ss = np.linspace(s0, s1, rows + 1)
        dd = np.linspace(-wr, wl, cols + 1)
        quads, parity = [], []
        for a in range(rows):
            for b in range(cols):
                s_c = np.array([ss[a], ss[a + 1], ss[a + 1], ss[a]])
                d_c = np.array([dd[b], dd[b], dd[b + 1], dd[b + 1]])
                x, y, _ = tr.frenet_to_xy(s_c, d_c)
                quads.append(np.stack([x, y], axis=1))
                parity.append((a + b) % 2)
        return np.array(quads), np.array(parity)

    def _to_px(self, pts: np.ndarray) -> np.ndarray:
        out = np.empty_like(pts, dtype=np.float64)
        out[:, 0] = (pts[:, 0] - self.ox) * self.scale
        out[:, 1] = (self.oy - pts[:, 1]) * self.scale
        return out

    def world_to_px(self, x, y):
        return (np.asarray(x) - self.ox) * self.scale, (self.oy - np.asarray(y)) * self.scale

    def tile(self, ti: int, tj: int):
        key = (ti, tj)
        img = self._tiles.get(key)
        if img is not None:
            self._tiles.move_to_end(key)
            return img
        img = self._render_tile(ti, tj)
        self._tiles[key] = img
        if len(self._tiles) > MAX_TILES:
            self._tiles.popitem(last=False)
        return img

    def _render_tile(self, ti: int, tj: int):
        Image, ImageDraw, _ = _require_pil()
        T = TILE_PX
        u0, v0 = ti * T, tj * T
        lo = np.array([u0, v0], dtype=np.float64)
        hi = lo + T
        pad = 4.0  # [px] covers line widths
        hits = []
        for quads, qmin, qmax, colors in self.polys:
            m = np.all(qmax >= lo - pad, axis=1) & np.all(qmin <= hi + pad, axis=1)
            if m.any():
                hits.append((quads, np.flatnonzero(m), colors))
        line_hits = []
        for pts, smin, smax, color, width in self.lines:
            m = np.all(smax >= lo - pad - width, axis=1) & np.all(smin <= hi + pad + width, axis=1)
            if m.any():
                line_hits.append((pts, np.flatnonzero(m), color, width))
        if not hits and not line_hits:
            if self._grass_tile is None:
                self._grass_tile = Image.new("RGB", (T, T), GRASS)
            return self._grass_tile
        ss = SUPERSAMPLE
        img = Image.new("RGB", (T * ss, T * ss), GRASS)
        draw = ImageDraw.Draw(img)
        for quads, idx, colors in hits:
            # integer pixels: pillow truncates wide-line coordinates towards zero, which
            # would shift a line by a pixel between neighbouring tiles (visible seams)
            local = np.floor((quads[idx] - lo) * ss + 0.5).astype(np.int64).reshape(len(idx), -1).tolist()
            for k, flat in zip(idx.tolist(), local):
                draw.polygon(flat, fill=colors[k])
        n_pts = None
        for pts, idx, color, width in line_hits:
            n_pts = pts.shape[0]
            # contiguous runs of segments become one polyline (proper joints)
            breaks = np.flatnonzero(np.diff(idx) != 1) + 1
            for run in np.split(idx, breaks):
                ids = np.append(run, (run[-1] + 1) % n_pts)
                flat = np.floor((pts[ids] - lo) * ss + 0.5).astype(np.int64).reshape(-1).tolist()
                draw.line(flat, fill=color, width=width, joint="curve" if width > 2 else None)
        return img.reduce(ss) if ss > 1 else img


# ============================================================================ renderer
class TopDownRenderer:
    """Headless top-down renderer of one race of a :class:`racing.sim.RaceSim`.

    Args:
        track: the :class:`racing.track.Track` to draw first (a race on another track
            makes :meth:`draw` switch and rasterise that one).
        width, height: image size [px].
        follow: True for a camera centred on the focus car, False for the whole track.
        view_m: window size [m] across the shorter image side. Default: 180 m when
            following; the bounding box of the walls for the whole-track view.

    :meth:`draw` returns frames; :meth:`show` puts a frame in a window (pygame);
    :meth:`close` closes it and frees the tile cache.
    """

    def __init__(self, track, width: int = 640, height: int = 640, *, follow: bool = True,
                 view_m: float | None = None):
        for name, v in (("width", width), ("height", height)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 16 <= int(v) <= 8192:
                raise ConfigError(f"renderer {name} must be an integer in [16, 8192] px, got {v!r}")
        if view_m is not None and (not isinstance(view_m, (int, float)) or isinstance(view_m, bool)
                                   or not math.isfinite(view_m) or view_m <= 0):
            raise ConfigError(f"renderer view_m must be a positive number of metres, got {view_m!r}")
        _require_pil()
        self.width = int(width)
        self.height = int(height)
        self.follow = bool(follow)
        self.view_m = float(view_m) if view_m is not None else (DEFAULT_FOLLOW_VIEW_M if self.follow else None)
        self._layer: _TrackLayer | None = None
        self._static_frame = None  # whole-track view: the assembled background
        self._origin = (0, 0)  # global px of the frame's top-left corner
        self._fonts: dict = {}
        self._window = None
        self.last_frame: np.ndarray | None = None
        self._use_track(track)

    # ------------------------------------------------------------ geometry
    @property
    def track(self):
        return self._layer.track

    @property
    def scale(self) -> float:
        """Pixels per metre."""
        return self._layer.scale

    def _use_track(self, track) -> None:
        if self._layer is not None and self._layer.track is track:
            return
        if self.view_m is not None:
            scale = min(self.width, self.height) / self.view_m
        else:
            from racing.sim import wall_distance

            wl = wall_distance(track.w_left, track.wall_margin_m, track.kappa)
            wr = wall_distance(track.w_right, track.wall_margin_m, -track.kappa)
            i = np.arange(track.n)
            pts = np.concatenate([track.xy_at(i, wl), track.xy_at(i, -wr)])
            extent = np.maximum(pts.max(axis=0) - pts.min(axis=0), 1.0)
            scale = 0.95 * min(self.width / extent[0], self.height / extent[1])
        self._layer = _TrackLayer(track, scale)
        self._static_frame = None

    def world_to_pixel(self, x, y):
        """Image ``(column, row)`` [px, float] of world points ``(x, y)`` [m] in the last
        frame drawn (the camera of that frame)."""
        u, v = self._layer.world_to_px(x, y)
        return u - self._origin[0], v - self._origin[1]

    def _camera_origin(self, cx_m: float, cy_m: float) -> tuple[int, int]:
        u, v = self._layer.world_to_px(cx_m, cy_m)
        return int(math.floor(float(u) - 0.5 * self.width)), int(math.floor(float(v) - 0.5 * self.height))

    def _background(self, origin):
        Image, _, _ = _require_pil()
        T = TILE_PX
        u0, v0 = origin
        img = Image.new("RGB", (self.width, self.height))
        for tj in range(v0 // T, (v0 + self.height - 1) // T + 1):
            for ti in range(u0 // T, (u0 + self.width - 1) // T + 1):
                img.paste(self._layer.tile(ti, tj), (ti * T - u0, tj * T - v0))
        return img

    # ------------------------------------------------------------ drawing
    def draw(self, sim, race: int = 0, focus_car: int = 0, hud: dict | None = None) -> np.ndarray:
        """Draw race ``race`` of ``sim`` and return an ``(height, width, 3)`` uint8 frame.

        Args:
            sim: a :class:`racing.sim.RaceSim`.
            race: which race of the batch.
            focus_car: index of the highlighted car *within the race* (the follow camera
                centres on it).
            hud: text for the heads-up display, or None for none. Known keys (any may be
                missing): ``speed_kmh``, ``lap``, ``num_laps``, ``position``,
                ``num_cars``, ``lap_time_s``, ``last_lap_s``, ``best_lap_s`` (None shows
                ``-:--.---``); any other key is shown as ``key: value``.
                :func:`hud_from_sim` builds one from the simulator.
        """
        _, ImageDraw, _ = _require_pil()
        if not 0 <= int(race) < sim.num_races:
            raise ConfigError(f"race must be in [0, {sim.num_races}), got {race}")
        if not 0 <= int(focus_car) < sim.cars_per_race:
            raise ConfigError(f"focus_car must be in [0, {sim.cars_per_race}) (index within the race), got {focus_car}")
        race, focus_car = int(race), int(focus_car)
        self._use_track(sim.track_of(race))
        c_focus = race * sim.cars_per_race + focus_car
        if self.follow:
            self._origin = self._camera_origin(float(sim.x[c_focus]), float(sim.y[c_focus]))
            img = self._background(self._origin)
        else:
            if self._static_frame is None:
                centre = 0.5 * (self._layer.bbox_min + self._layer.bbox_max)
                self._origin = self._camera_origin(float(centre[0]), float(centre[1]))
                self._static_frame = self._background(self._origin)
            img = self._static_frame.copy()
        draw = ImageDraw.Draw(img)
        self._draw_cars(draw, sim, race, focus_car)
        if hud:
            self._draw_hud(img, draw, hud)
        frame = np.array(img, dtype=np.uint8)
        self.last_frame = frame
        return frame

    def _draw_cars(self, draw, sim, race: int, focus_car: int) -> None:
        from racing.dynamics import I_ACTIVE, P_LEN, P_WID

        n = sim.cars_per_race
        cars = [k for k in range(n) if k != focus_car] + [focus_car]  # focus car on top
        for k in cars:
            c = race * n + k
            if sim.I[I_ACTIVE, c] != 1:
                continue
            length_px = sim.P[c, P_LEN] * self.scale
            grow = max(1.0, MIN_CAR_PX / length_px)
            half_l = 0.5 * length_px * grow
            half_w = 0.5 * sim.P[c, P_WID] * self.scale * grow
            u, v = self.world_to_pixel(sim.x[c], sim.y[c])
            u, v = float(u), float(v)
            if not (-50 <= u <= self.width + 50 and -50 <= v <= self.height + 50):
                continue
            yaw = float(sim.yaw[c])
            fx, fy = math.cos(yaw), -math.sin(yaw)  # forward, image axes (rows grow down)
            lx, ly = -fy, fx  # to the car's left in image axes

            def box(a0, a1, b):  # longitudinal range [a0, a1] x lateral [-b, b], in half-lengths
                return [(u + fx * a * half_l + lx * s * b * half_w, v + fy * a * half_l + ly * s * b * half_w)
                        for a, s in ((a1, 1), (a1, -1), (a0, -1), (a0, 1))]

            focus = k == focus_car
            color = FOCUS_COLOR if focus else CAR_COLORS[k % len(CAR_COLORS)]
            if focus and half_l < 8.0:  # small cars: a ring to find the focus car
                r = 2.2 * half_l
                draw.ellipse((u - r, v - r, u + r, v + r), outline=FOCUS_COLOR, width=2)
            outline = (255, 255, 255) if focus else tuple(int(0.45 * ch) for ch in color)
            draw.polygon(box(-1.0, 1.0, 1.0), fill=color, outline=outline, width=2 if focus and half_l > 6 else 1)
            if half_l >= 5.0:  # windscreen: the front of the car
                draw.polygon(box(0.15, 0.5, 0.7), fill=(30, 34, 44))

    def _font(self, size: int):
        font = self._fonts.get(size)
        if font is None:
            _, _, ImageFont = _require_pil()
            try:
                font = ImageFont.load_default(size=size)
            except TypeError:  # pragma: no cover - pillow < 10.1 has one bitmap size
                font = ImageFont.load_default()
            self._fonts[size] = font
        return font

    @staticmethod
    def hud_lines(hud: dict) -> list[str]:
        """The text lines :meth:`draw` shows for ``hud`` (first line: speed)."""
        h = dict(hud)
        lines = []
        if "speed_kmh" in h:
            v = h.pop("speed_kmh")
            lines.append(f"{float(v):4.0f} km/h" if v is not None else "---- km/h")
        lap = h.pop("lap", None)
        num_laps = h.pop("num_laps", None)
        pos = h.pop("position", None)
        num_cars = h.pop("num_cars", None)
        parts = []
        if lap is not None:
            parts.append(f"Lap {lap}" + (f"/{num_laps}" if num_laps is not None else ""))
        if pos is not None:
            parts.append(f"P{pos}" + (f"/{num_cars}" if num_cars is not None else ""))
        if parts:
            lines.append("   ".join(parts))
        for key, label in (("lap_time_s", "Time"), ("last_lap_s", "Last"), ("best_lap_s", "Best")):
            if key in h:
                lines.append(f"{label}  {format_lap_time(h.pop(key))}")
        for key, value in h.items():
            if isinstance(value, float):
                value = f"{value:.4g}"
            lines.append(f"{key}: {value}")
        return lines

    def _draw_hud(self, img, draw, hud: dict) -> None:
        Image, _, _ = _require_pil()
        lines = self.hud_lines(hud)
        if not lines:
            return
        size = max(10, int(round(self.height / 40)))
        fonts = [self._font(int(size * 1.5)) if (k == 0 and "speed_kmh" in hud) else self._font(size)
                 for k in range(len(lines))]
        pad = max(4, size // 2)
        heights, widths = [], []
        for text, font in zip(lines, fonts):
            x0, y0, x1, y1 = font.getbbox(text)
            widths.append(x1)
            heights.append(max(y1, font.size) + 2)
        box = (6, 6, min(self.width, 6 + 2 * pad + max(widths)), min(self.height, 6 + 2 * pad + sum(heights)))
        region = img.crop(box)
        img.paste(Image.blend(region, Image.new("RGB", region.size, (0, 0, 0)), 0.6), box[:2])
        y = box[1] + pad
        for text, font, h in zip(lines, fonts, heights):
            draw.text((box[0] + pad, y), text, fill=(255, 255, 255), font=font)
            y += h

    # ------------------------------------------------------------ window
    def show(self, frame: np.ndarray | None = None) -> bool:
        """Show ``frame`` (default: the last one drawn) in a window, opening it on first use.

        Returns False once the user has closed the window (it is then closed here too),
        True otherwise. Raises :class:`racing.errors.RacingError` when pygame is missing or
        no display is available (render headless with ``render_mode="rgb_array"``).
        """
        if frame is None:
            frame = self.last_frame
            if frame is None:
                raise RacingError("show(): nothing to show yet; call draw() first or pass a frame")
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ConfigError(f"show(): frame must be an (H, W, 3) uint8 array, got {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        if self._window is None or self._window.get_size() != (w, h):
            self._open_window(w, h)
        import pygame

        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                self.close()
                return False
        surf = pygame.image.frombuffer(np.ascontiguousarray(frame).tobytes(), (w, h), "RGB")
        self._window.blit(surf, (0, 0))
        pygame.display.flip()
        return True

    def _open_window(self, w: int, h: int) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            import pygame
        except ImportError as exc:
            raise RacingError("the render window needs pygame: pip install pygame-ce (or render headless with "
                              "render_mode=\"rgb_array\")") from exc
        if not display_available():
            raise RacingError("no display available for a window (DISPLAY and WAYLAND_DISPLAY are unset); render "
                              "headless with render_mode=\"rgb_array\" and save frames or a video instead, or set "
                              "SDL_VIDEODRIVER=dummy to run the window code without a screen")
        try:
            if not pygame.display.get_init():
                pygame.display.init()
            self._window = pygame.display.set_mode((w, h))
            pygame.display.set_caption("racing")
        except pygame.error as exc:
            self._window = None
            raise RacingError(f"could not open a window ({exc}); render headless with render_mode=\"rgb_array\"") from exc

    @property
    def window_open(self) -> bool:
        return self._window is not None

    def close(self) -> None:
        """Close the window (if any) and drop the cached track tiles."""
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None
        if self._layer is not None:
            self._layer._tiles.clear()
        self._static_frame = None


def display_available() -> bool:
    """Whether a window can be opened: always on Windows/macOS; on other systems when
    ``DISPLAY`` or ``WAYLAND_DISPLAY`` is set, or ``SDL_VIDEODRIVER`` names a driver
    explicitly (``dummy``/``offscreen`` run the window code without a screen)."""
    if sys.platform.startswith(("win", "darwin")):
        return True
    return any(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"))


# =============================================================================== video
def _imageio_writer(path: Path, fps: float):
    """An imageio-ffmpeg writer, or None when imageio or its ffmpeg backend is missing."""
    try:
        import imageio.v2 as iio
        import imageio_ffmpeg  # noqa: F401  (the backend; imageio alone cannot write MP4)
    except ImportError:
        return None
    return iio.get_writer(str(path), fps=fps, codec="libx264", quality=7, macro_block_size=1)


def save_video(frames: Iterable[np.ndarray], path, fps: float = 10.0) -> Path:
    """Write ``frames`` ((H, W, 3) uint8, all the same size) as a video; returns the path
    written.

    ``.gif`` writes an animated GIF with pillow. ``.mp4`` (also ``.mov``, ``.mkv``,
    ``.avi``, ``.webm``) needs ``imageio`` with ``imageio-ffmpeg``; without them a GIF is
    written next to it (same name, ``.gif``) with a warning saying what to install.
    """
    path = Path(path)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ConfigError(f"save_video: fps must be a positive number, got {fps!r}")
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4", ".mov", ".mkv", ".avi", ".webm"):
        raise ConfigError(f"save_video: unsupported video format '{path.suffix}' for {path}; use .mp4 or .gif")
    it = iter(frames)
    try:
        first = np.asarray(next(it))
    except StopIteration:
        raise ConfigError("save_video: no frames to write") from None
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ConfigError(f"save_video: frames must be (H, W, 3) uint8 arrays, got {first.shape} {first.dtype}")

    def checked():
        yield first
        for k, f in enumerate(it, start=1):
            f = np.asarray(f)
            if f.shape != first.shape or f.dtype != np.uint8:
                raise ConfigError(f"save_video: frame {k} is {f.shape} {f.dtype}, expected {first.shape} uint8")
            yield f

    if path.parent and not path.parent.exists():
        raise ConfigError(f"save_video: directory {path.parent} does not exist")
    if suffix != ".gif":
        writer = _imageio_writer(path, fps)
        if writer is not None:
            with writer:
                for f in checked():
                    writer.append_data(f)
            return path
        path = path.with_suffix(".gif")
        warnings.warn(f"no MP4 writer available (pip install imageio imageio-ffmpeg); wrote an animated GIF to {path}",
                      stacklevel=2)
    Image, _, _ = _require_pil()
    # GIF frame durations are whole centiseconds; one adaptive palette per frame
    duration_ms = max(20, int(round(100.0 / fps)) * 10)

    def quantised():
        for f in checked():
            yield Image.fromarray(f).quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)

    q = quantised()
    head = next(q)
    tmp = path.with_name(path.name + ".tmp")
    head.save(tmp, format="GIF", save_all=True, append_images=q, duration=duration_ms, loop=0, optimize=False)
    os.replace(tmp, path)
    return path


class EnvRenderer:
    """What an environment's ``render()`` does: one :class:`TopDownRenderer` made on first use
    (it follows track changes by itself), a frame per call, shown in a window in ``"human"``
    mode (then ``None`` is returned) and returned in ``"rgb_array"`` mode."""

    def __init__(self, mode: str, width: int = 640, height: int = 640):
        self.mode = mode
        self.size = (width, height)
        self._renderer: TopDownRenderer | None = None

    def __call__(self, sim, race: int = 0, focus_car: int = 0, hud: dict | None = None):
        if self._renderer is None:
            self._renderer = TopDownRenderer(sim.track_of(race), width=self.size[0], height=self.size[1])
        frame = self._renderer.draw(sim, race=race, focus_car=focus_car, hud=hud)
        if self.mode == "human":
            self._renderer.show(frame)
            return None
        return frame

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

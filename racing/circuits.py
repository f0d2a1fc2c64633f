"""Built-in circuits designed by this project (original layouts, not copies of real ones).

Each circuit is described as a closed polygon of corner vertices, each with a fillet
radius: the car drives straight along the polygon edges and round each vertex on a
circular arc tangent to both edges. That "turtle" path (straights and arcs) is turned
into a curvature profile, the curvature is smoothed with a moving average (giving
clothoid-like linear curvature ramps into and out of every corner, ``transition_m``
long) and integrated back to positions. The residual closure gap the smoothing leaves
(centimetres to a few metres over a lap) is removed by a linear drift along the lap,
which leaves curvature unchanged and closes the loop exactly with matching heading.

Each public circuit function returns a :class:`CircuitDesign`; :func:`make_circuit_track`
turns one into a :class:`racing.track.Track`. Use :func:`racing.trackio.load_track` to
get a (cached) track by name.

The same geometry helpers (:func:`fillet_polygon`, :func:`path_from_segments`) are
used by :mod:`racing.procgen`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from racing.track import DEFAULT_DS_M, DEFAULT_WALL_MARGIN_M, Track, build_track

#: Spacing of the centreline points a design hands to :func:`racing.track.build_track` [m].
DESIGN_POINT_SPACING_M = 2.0


@dataclass(frozen=True)
class CircuitDesign:
    """A built-in circuit before it is fitted into a :class:`Track`.

    ``xy`` are centreline points [m] in driving order every ~2 m; the loop closes from
    the last point back to the first (not repeated). The first point is the
    start/finish line, on a straight.
    """

    name: str
    xy: np.ndarray
    w_right: float | np.ndarray
    w_left: float | np.ndarray
    sector_fractions: tuple[float, float, float]
    description: str


# --------------------------------------------------------------------------- geometry
def fillet_polygon(vertices, radii, start_fraction: float = 0.5):
    """Turn a closed corner polygon into a path of straights and circular arcs.

    Args:
        vertices: (n, 2) corner points [m] in driving order (closed, not repeated).
        radii: (n,) fillet radius of each corner [m].
        start_fraction: where the start line lies on the edge from the last vertex to
            the first, as a fraction of that edge.

    Returns:
        ``(segments, origin, heading0)``: ``segments`` is a list of ``("S", length)``
        and ``("A", radius, signed_turn_rad)`` starting at the start line (``origin``,
        heading ``heading0``). Raises ``ValueError`` when the fillets do not fit on the
        edges.
    """
    v = np.asarray(vertices, dtype=np.float64)
    r = np.broadcast_to(np.asarray(radii, dtype=np.float64), (v.shape[0],))
    n = v.shape[0]
    edges = np.roll(v, -1, axis=0) - v  # edge i: v[i] -> v[i+1]
    elen = np.hypot(edges[:, 0], edges[:, 1])
    if np.any(elen < 1e-9):
        raise ValueError("polygon has a zero-length edge")
    edir = edges / elen[:, None]
    din = np.roll(edir, 1, axis=0)  # incoming direction at vertex i (edge i-1)
    cross = din[:, 0] * edir[:, 1] - din[:, 1] * edir[:, 0]
    dot = np.sum(din * edir, axis=1)
    turn = np.arctan2(cross, dot)
    tan_len = r * np.tan(np.abs(turn) / 2.0)
    straight = elen - tan_len - np.roll(tan_len, -1)  # edge i between the arcs of i and i+1
    last = n - 1
    before = elen[last] * start_fraction - tan_len[last]  # straight before the start line
    after = elen[last] * (1.0 - start_fraction) - tan_len[0]
    bad = [i for i in range(n - 1) if straight[i] < -1e-9]
    if bad or before < -1e-9 or after < -1e-9:
        raise ValueError(f"fillets do not fit on the polygon edges (edges {bad}, start edge {before:.1f}/{after:.1f} m)")
    segs: list[tuple] = [("S", max(after, 0.0))]
    for i in range(n):
        if abs(turn[i]) > 1e-12:
            segs.append(("A", float(r[i]), float(turn[i])))
        segs.append(("S", max(float(straight[i]) if i < last else before, 0.0)))
    origin = v[last] + start_fraction * edges[last]
    heading0 = float(math.atan2(edir[last, 1], edir[last, 0]))
    return segs, origin, heading0


def segment_lengths(segments) -> np.ndarray:
    """Arc length of each ``("S", L)`` / ``("A", R, turn)`` segment [m]."""
    return np.array([s[1] if s[0] == "S" else s[1] * abs(s[2]) for s in segments], dtype=np.float64)


def path_from_segments(
    segments,
    *,
    origin=(0.0, 0.0),
    heading0: float = 0.0,
    transition_m: float = 30.0,
    step_m: float = 0.5,
    out_spacing_m: float = DESIGN_POINT_SPACING_M,
) -> np.ndarray:
    """Integrate a closed turtle path into centreline points with smoothed curvature.

    The turns must sum to +-360 degrees. Curvature is averaged over ``transition_m``
    (clothoid-like entries and exits); the closure gap this leaves is removed with a
    linear drift. Returns (n, 2) points every ~``out_spacing_m`` starting at ``origin``.
    """
    lens = segment_lengths(segments)
    turns = np.array([0.0 if s[0] == "S" else s[2] for s in segments])
    total_turn = float(np.sum(turns))
    if abs(abs(total_turn) - 2.0 * math.pi) > 1e-6:
        raise ValueError(f"turns sum to {math.degrees(total_turn):.4f} deg, not +-360")
    total = float(np.sum(lens))
    knots_s = np.concatenate([[0.0], np.cumsum(lens)])
    knots_th = np.concatenate([[0.0], np.cumsum(turns)])
    sub = max(int(round(out_spacing_m / step_m)), 1)
    n_out = max(int(round(total / (sub * step_m))), 8)
    n = n_out * sub
    h = total / n
    theta_nodes = np.interp(np.arange(n + 1) * h, knots_s, knots_th)  # exact: piecewise linear
    dtheta = np.diff(theta_nodes)  # turn inside each cell; sums exactly to total_turn
    m = max(int(round(transition_m / h)), 1) | 1  # odd window, centred
    if m > 1:
        c = np.concatenate([dtheta[-(m // 2):], dtheta, dtheta[: m // 2]])
        cs = np.concatenate([[0.0], np.cumsum(c)])
        dtheta = (cs[m:] - cs[:-m]) / m
    head = heading0 + np.concatenate([[0.0], np.cumsum(dtheta)])
    mid = 0.5 * (head[:-1] + head[1:])
    chord = h * np.sinc(dtheta / (2.0 * math.pi))  # exact chord of a circular cell
    steps = np.stack([chord * np.cos(mid), chord * np.sin(mid)], axis=1)
    pts = np.concatenate([[np.zeros(2)], np.cumsum(steps, axis=0)])
    gap = pts[-1] - pts[0]
    pts = pts - np.outer(np.arange(n + 1) / n, gap)  # linear drift: closes the loop exactly
    return pts[:-1:sub] + np.asarray(origin, dtype=np.float64)


def _segment_mid_fraction(segments, index: int) -> float:
    lens = segment_lengths(segments)
    return float((np.sum(lens[:index]) + 0.5 * lens[index]) / np.sum(lens))


def _design(name, description, corners, *, start_fraction, width, transition_m, sectors):
    """Build a :class:`CircuitDesign` from ``corners`` = [(x, y, radius), ...].

    ``sectors``: where sectors 2 and 3 start, each the index of a straight segment (the
    sector starts in its middle) or a float fraction of the lap.
    """
    c = np.asarray(corners, dtype=np.float64)
    segs, origin, h0 = fillet_polygon(c[:, :2], c[:, 2], start_fraction)
    xy = path_from_segments(segs, origin=origin, heading0=h0, transition_m=transition_m)
    fr = (0.0,) + tuple(f if isinstance(f, float) else _segment_mid_fraction(segs, f) for f in sectors)
    return CircuitDesign(name=name, xy=xy, w_right=width / 2.0, w_left=width / 2.0,
                         sector_fractions=fr, description=description)


# --------------------------------------------------------------------------- circuits
def oval() -> CircuitDesign:
    """Oval: two 430 m straights joined by two 180-degree turns of radius 150 m
    (120 m easements), 15 m wide, anticlockwise; 1.8 km."""
    r = 150.0
    w = 730.0
    corners = [(w, 0.0, r), (w, 2 * r, r), (0.0, 2 * r, r), (0.0, 0.0, r)]
    # segments: S(after) A S(0) A S(back) A S(0) A S(before)
    return _design("oval", "1.8 km oval: two 430 m straights, two constant-radius (150 m) 180-degree turns, 15 m wide",
                   corners, start_fraction=0.5, width=15.0, transition_m=120.0, sectors=(1.0 / 3.0, 2.0 / 3.0))


def club() -> CircuitDesign:
    """Club circuit: 2.2 km, 9 corners (16-50 m radius) including a tight 130-degree
    right, a left-right esse after turn 1, 11 m wide, clockwise."""
    corners = [
        (520.0, 0.0, 22.0),
        (520.0, -120.0, 50.0),
        (600.0, -200.0, 40.0),
        (450.0, -350.0, 16.0),
        (430.0, -165.0, 35.0),
        (130.0, -180.0, 25.0),
        (170.0, -400.0, 20.0),
        (-20.0, -360.0, 45.0),
        (-60.0, 0.0, 30.0),
    ]
    return _design("club", "2.2 km club circuit, 9 corners of 16-50 m radius, short straights, 11 m wide, clockwise",
                   corners, start_fraction=0.6, width=11.0, transition_m=25.0, sectors=(10, 16))


def _chicane(a, b, at: float, offset: float, length: float, radius: float):
    """Three corner vertices of a bus-stop chicane on the edge from ``a`` to ``b``: it
    starts at fraction ``at`` of the edge, jinks sideways by ``offset`` (positive: left)
    and is back on the edge line ``length`` metres later."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    u = (b - a) / np.hypot(*(b - a))
    nrm = np.array([-u[1], u[0]])
    p0 = a + at * (b - a)
    p1 = p0 + 0.5 * length * u + offset * nrm
    p2 = p0 + length * u
    # vertices p0 (turn towards the offset), p1 (turn back twice as far), p2 (straighten)
    return [(*p0, radius), (*p1, radius), (*p2, radius)]


def technical() -> CircuitDesign:
    """Technical circuit: 3.3 km, two 15-16 m hairpins, a bus-stop chicane on the back
    straight, slow and medium corners, 12 m wide, anticlockwise."""
    k = 1.25
    v1 = np.array([660.0 * k, 32.0 * k])
    v2 = np.array([300.0 * k, 200.0 * k])
    corners = [
        (650.0 * k, 0.0, 15.0),
        (*v1, 15.0),
        *_chicane(v1, v2, 0.45, 20.0, 50.0, 15.0),
        (*v2, 45.0),
        (80.0 * k, 200.0 * k, 45.0),
        (0.0 * k, 330.0 * k, 70.0),
        (-250.0 * k, 330.0 * k, 16.0),
        (-255.0 * k, 298.0 * k, 16.0),
        (-100.0 * k, 150.0 * k, 25.0),
        (-360.0 * k, 90.0 * k, 40.0),
        (-390.0 * k, 0.0, 30.0),
    ]
    return _design("technical", "3.3 km technical circuit: two hairpins (15-16 m), a chicane, slow and medium corners, "
                   "12 m wide, anticlockwise", corners, start_fraction=0.6, width=12.0, transition_m=20.0,
                   sectors=(12, 22))


def flowing() -> CircuitDesign:
    """Fast flowing circuit: 5.3 km, sweepers of 90-350 m radius, a fast esse sequence,
    two slower corners (35-40 m), a 1.2 km main straight, 13 m wide, clockwise."""
    corners = [
        (1100.0, 0.0, 160.0),
        (1350.0, -300.0, 350.0),
        (1750.0, -420.0, 110.0),
        (1650.0, -800.0, 35.0),
        (1250.0, -820.0, 220.0),
        (1000.0, -700.0, 150.0),
        (800.0, -780.0, 150.0),
        (600.0, -660.0, 150.0),
        (400.0, -700.0, 90.0),
        (150.0, -950.0, 40.0),
        (-250.0, -800.0, 200.0),
        (-350.0, -350.0, 120.0),
        (-250.0, 0.0, 90.0),
    ]
    return _design("flowing", "5.3 km fast flowing circuit: 90-350 m sweepers, fast esses, two slow corners, "
                   "long straights, 13 m wide, clockwise", corners, start_fraction=0.5, width=13.0,
                   transition_m=60.0, sectors=(8, 20))


CIRCUITS: dict[str, Callable[[], CircuitDesign]] = {
    "oval": oval,
    "club": club,
    "technical": technical,
    "flowing": flowing,
}


def circuit_names() -> list[str]:
    """Names of the built-in circuits."""
    return list(CIRCUITS)


def make_circuit_track(name: str, *, ds: float = DEFAULT_DS_M, wall_margin_m: float = DEFAULT_WALL_MARGIN_M) -> Track:
    """Build the :class:`Track` of built-in circuit ``name`` (``KeyError`` if unknown)."""
    d = CIRCUITS[name]()
    return build_track(d.name, d.xy, d.w_right, d.w_left, ds=ds, wall_margin_m=wall_margin_m,
                       sector_fractions=d.sector_fractions, source="built-in", smooth=0,
                       meta={"description": d.description})

"""Procedurally generated circuits: ``generate_track(seed)`` -> a valid :class:`Track`.

Recipe (deterministic for a seed, via ``numpy.random.default_rng``):

1. Corner polygon: 6-11 control points around a (randomly stretched) circle at sorted,
   jittered angles with a random radial perturbation: a star-shaped, hence simple,
   polygon. Midpoints of some edges are pushed sideways (mostly inwards) to make
   infield sections, and sometimes a narrow V-shaped tongue adds a hairpin. The
   longest edge is kept for the main straight. Near-collinear vertices are dropped and
   the polygon is scaled to the target lap length.
2. Every vertex gets a fillet radius drawn by corner type (hairpin, slow, medium, fast
   sweeper), limited so the arcs fit on the edges; the car drives straights along the
   edges and arcs round the vertices (:func:`racing.circuits.fillet_polygon`).
3. Curvature is smoothed into clothoid-like transitions and integrated back to a
   closed centreline (:func:`racing.circuits.path_from_segments`). The start/finish
   line goes on the longest straight, with at least 150 m of it before the line.
4. Widths (10-14 m, varying slowly along the lap on most tracks) and the
   :class:`Track` are built, then checked (:func:`check_track`): minimum radius
   >= 12 m, at least 5 corners, and no corridor overlap, which includes
   self-intersection (:func:`corridor_clearance`). A failed candidate is replaced by
   one drawn from a derived seed (``default_rng([seed, attempt])``) until one passes.
   Over seeds 0-999 about one candidate in six fails; each track takes ~15 ms.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from racing.errors import TrackError
from racing.track import DEFAULT_DS_M, DEFAULT_WALL_MARGIN_M, Track

#: Minimum centreline radius of a generated track [m].
MIN_RADIUS_M = 12.0
#: Fewest corners (see :attr:`racing.track.Track.corners`) of a generated track.
MIN_CORNERS = 5
#: Extra clearance between corridors (edge + run-off on both sides) [m].
CORRIDOR_BUFFER_M = 3.0


# --------------------------------------------------------------------------- validity
@nb.njit(cache=True)
def _corridor_min_distance(xs, ys, cum_s, thr):
    """Smallest distance between two points of a closed polyline that are *not*
    neighbours along it, and the arc lengths of that pair.

    Points ``i`` and ``j`` are neighbours when the path between them stays within
    ``thr`` of ``i`` one way round or the other. So for each ``i`` only points after the
    path has first left the ``thr``-ball around ``i`` and before it last re-enters it
    count: those are other parts of the circuit folding back towards ``i``.
    Returns ``(min_dist, s_i, s_j)``; ``min_dist`` is ``inf`` if no such pair is
    closer than ``thr``.
    """
    n = xs.shape[0]
    thr2 = thr * thr
    best = np.inf
    bi = -1
    bj = -1
    d2 = np.empty(n)
    for i in range(n):
        for k in range(n):
            j = i + k
            if j >= n:
                j -= n
            dx = xs[j] - xs[i]
            dy = ys[j] - ys[i]
            d2[k] = dx * dx + dy * dy
        first = -1
        for k in range(1, n):
            if d2[k] > thr2:
                first = k
                break
        if first < 0:
            continue
        last = -1
        for k in range(n - 1, 0, -1):
            if d2[k] > thr2:
                last = k
                break
        for k in range(first + 1, last):
            if d2[k] < thr2 and d2[k] < best * best:
                best = math.sqrt(d2[k])
                bi = i
                bj = i + k
                if bj >= n:
                    bj -= n
    si = cum_s[bi] if bi >= 0 else -1.0
    sj = cum_s[bj] if bj >= 0 else -1.0
    return best, si, sj


def required_clearance_m(track: Track, buffer_m: float = CORRIDOR_BUFFER_M) -> float:
    """Distance two non-neighbouring parts of the centreline must keep [m]: the full
    track width plus run-off (wall margin) on both sides plus ``buffer_m``."""
    width = float(np.max(track.w_left + track.w_right))
    return width + 2.0 * track.wall_margin_m + buffer_m


def corridor_clearance(track: Track, *, buffer_m: float = CORRIDOR_BUFFER_M, step_m: float = 2.0):
    """Closest approach of two non-neighbouring parts of the centreline.

    Returns ``(ok, min_distance_m, s_a, s_b)``: ``ok`` is False when some part of the
    track (tarmac plus run-off to the wall) would overlap another part, i.e. the
    distance is below :func:`required_clearance_m`. ``min_distance_m`` is ``inf`` (and
    ``s_a``, ``s_b`` are -1) when nothing comes that close. A crossing centreline has
    distance ~0, so this also detects self-intersection.
    """
    thr = required_clearance_m(track, buffer_m)
    k = max(int(round(step_m / track.ds)), 1)
    xs = np.ascontiguousarray(track.x[::k])
    ys = np.ascontiguousarray(track.y[::k])
    cum = np.ascontiguousarray(track.s[::k])
    dmin, sa, sb = _corridor_min_distance(xs, ys, cum, thr)
    return bool(dmin >= thr), float(dmin), float(sa), float(sb)


# --------------------------------------------------------------------------- generation
#: Options :func:`generate_track` accepts.
OPTIONS = ("length_m", "width_m", "ds", "wall_margin_m", "max_attempts")

# Corner types: (probability, min radius, max radius) [m]
_CORNER_TYPES = (
    (0.12, 13.0, 22.0),  # hairpin
    (0.25, 22.0, 50.0),  # slow
    (0.35, 50.0, 120.0),  # medium
    (0.28, 120.0, 320.0),  # fast sweeper
)
_MIN_START_STRAIGHT_M = 150.0


def _candidate(rng: np.random.Generator, length_m: float | None, width_m: float | None, ds: float,
               wall_margin_m: float, name: str, meta: dict) -> Track | None:
    """One random circuit, or None when its construction fails (fillets do not fit)."""
    from racing.circuits import fillet_polygon, path_from_segments
    from racing.track import build_track

    target = float(length_m) if length_m is not None else float(rng.uniform(2000.0, 5000.0))
    n = int(rng.integers(6, 12))
    ang = 2.0 * np.pi * (np.arange(n) + rng.uniform(-0.3, 0.3, n)) / n + rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(0.15, 0.4)
    rad = 1.0 + rng.uniform(-amp, amp, n)
    stretch = rng.uniform(1.0, 1.8)  # elongated layouts have longer straights
    pts = np.stack([stretch * rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    # infield sections: displace the midpoints of some edges sideways (mostly inwards),
    # keeping the longest edge intact for the main straight
    elen = np.hypot(*(np.roll(pts, -1, axis=0) - pts).T)
    keep = int(np.argmax(elen))
    p_split = rng.uniform(0.3, 0.8)
    out = []
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        out.append(a)
        if i != keep and rng.random() < p_split:
            e = b - a
            nrm = np.array([-e[1], e[0]])  # left of the edge: inwards for an anticlockwise polygon
            side = 1.0 if rng.random() < 0.75 else -1.0
            out.append(a + rng.uniform(0.35, 0.65) * e + side * rng.uniform(0.12, 0.4) * nrm)
    pts = np.asarray(out)
    n = pts.shape[0]
    if rng.random() < 0.4:  # a hairpin: a narrow V-shaped tongue into the infield
        elen = np.hypot(*(np.roll(pts, -1, axis=0) - pts).T)
        cand = np.argsort(elen)[::-1][1:4]  # one of the longer edges, not the main straight
        i = int(cand[int(rng.integers(0, cand.size))])
        a, e = pts[i], pts[(i + 1) % n] - pts[i]
        nrm = np.array([-e[1], e[0]])
        c = rng.uniform(0.35, 0.65)
        half = rng.uniform(0.08, 0.14)
        tongue = [a + (c - half) * e, a + c * e + rng.uniform(0.3, 0.55) * nrm, a + (c + half) * e]
        pts = np.insert(pts, i + 1, tongue, axis=0)
        n = pts.shape[0]
    if rng.random() < 0.5:  # clockwise circuits as often as anticlockwise ones
        pts = pts[::-1]
    # drop near-collinear vertices (they would be invisible kinks)
    for _ in range(n):
        e_in = pts - np.roll(pts, 1, axis=0)
        e_out = np.roll(pts, -1, axis=0) - pts
        turn = np.abs(np.arctan2(e_in[:, 0] * e_out[:, 1] - e_in[:, 1] * e_out[:, 0], np.sum(e_in * e_out, axis=1)))
        k = int(np.argmin(turn))
        if turn[k] > np.radians(12.0) or pts.shape[0] <= 5:
            break
        pts = np.delete(pts, k, axis=0)
    n = pts.shape[0]
    perim = float(np.sum(np.hypot(*(np.roll(pts, -1, axis=0) - pts).T)))
    pts *= target * 1.04 / perim  # fillets cut corners: aim a little long

    edges = np.roll(pts, -1, axis=0) - pts  # edge i: vertex i -> i + 1
    elen = np.hypot(edges[:, 0], edges[:, 1])
    e_in = np.roll(edges, 1, axis=0)
    turn = np.arctan2(e_in[:, 0] * edges[:, 1] - e_in[:, 1] * edges[:, 0], np.sum(e_in * edges, axis=1))
    half_tan = np.tan(np.abs(turn) / 2.0)
    # desired radius by corner type; gentle kinks get fast radii
    probs = np.array([c[0] for c in _CORNER_TYPES])
    kinds = rng.choice(len(_CORNER_TYPES), size=n, p=probs)
    lo = np.array([_CORNER_TYPES[k][1] for k in kinds])
    hi = np.array([_CORNER_TYPES[k][2] for k in kinds])
    want = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    gentle = np.abs(turn) < np.radians(40.0)
    want[gentle] = np.maximum(want[gentle], rng.uniform(100.0, 300.0, int(gentle.sum())))
    # each corner may use up to 45 % of each neighbouring edge for its tangent
    room = 0.45 * np.minimum(elen, np.roll(elen, 1))
    rmax = room / np.maximum(half_tan, 1e-9)
    radius = np.minimum(want, rmax)
    if np.any(radius < MIN_RADIUS_M + 1.0):
        return None
    tan_len = radius * half_tan
    straight = elen - tan_len - np.roll(tan_len, -1)
    j = int(np.argmax(straight))  # start/finish on the longest straight
    if straight[j] < _MIN_START_STRAIGHT_M + 60.0:
        return None
    order = (np.arange(n) + j + 1) % n  # makes edge j the closing edge (last -> first vertex)
    pts, radius, tan_len = pts[order], radius[order], tan_len[order]
    e_last = elen[j]
    before = min(max(_MIN_START_STRAIGHT_M + 30.0, 0.6 * straight[j]), straight[j] - 20.0)
    start_fraction = (tan_len[-1] + before) / e_last
    try:
        segs, origin, h0 = fillet_polygon(pts, radius, start_fraction)
        xy = path_from_segments(segs, origin=origin, heading0=h0, transition_m=float(rng.uniform(20.0, 40.0)))
    except ValueError:
        return None
    xy = xy - xy[0]  # start/finish line at the origin

    total_w = float(width_m) if width_m is not None else float(rng.uniform(10.0, 14.0))
    m = xy.shape[0]
    phase = 2.0 * np.pi * np.arange(m) / m
    if width_m is None and rng.random() < 0.6:  # width varies slowly along the lap
        wave = rng.uniform(0.3, 1.0) * np.sin(int(rng.integers(1, 4)) * phase + rng.uniform(0, 2 * np.pi))
        w = np.clip(total_w + wave, 10.0, 14.0)
    else:
        w = np.full(m, total_w)
    return build_track(name, xy, w / 2.0, w / 2.0, ds=ds, wall_margin_m=wall_margin_m, source=name,
                       meta=dict(meta, target_length_m=round(target, 1)))


def check_track(track: Track, *, min_radius_m: float = MIN_RADIUS_M, min_corners: int = MIN_CORNERS,
                buffer_m: float = CORRIDOR_BUFFER_M) -> str | None:
    """Why ``track`` is not a valid generated circuit, or None if it is: minimum
    radius, enough corners, and no corridor overlap (which includes self-intersection)."""
    if track.min_radius_m < min_radius_m:
        return f"minimum radius {track.min_radius_m:.1f} m is below {min_radius_m:.0f} m"
    if len(track.corners) < min_corners:
        return f"only {len(track.corners)} corners (at least {min_corners})"
    ok, dmin, sa, sb = corridor_clearance(track, buffer_m=buffer_m)
    if not ok:
        return (f"the corridor at s={sa:.0f} m comes within {dmin:.1f} m of the one at s={sb:.0f} m "
                f"(needs {required_clearance_m(track, buffer_m):.1f} m)")
    return None


def generate_track(seed: int, **options) -> Track:
    """A procedurally generated closed circuit, the same for the same seed and options.

    Args:
        seed: non-negative integer.
        length_m: target lap length [m] (default: drawn from 2-5 km).
        width_m: total track width [m] (default: drawn from 10-14 m, varying slowly
            along the lap on most tracks).
        ds: sample spacing of the track tables [m] (default 1).
        wall_margin_m: run-off from each edge to the wall [m] (default 6).
        max_attempts: candidates to try before giving up (default 500).

    The track is named ``random:SEED``; ``meta`` records the seed and the attempt that
    passed (candidates come from ``default_rng([seed, attempt])``).
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TrackError(f"unknown procedural track option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TrackError(f"the seed of a random track must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    length_m = options.get("length_m")
    width_m = options.get("width_m")
    ds = float(options.get("ds", DEFAULT_DS_M))
    wall_margin_m = float(options.get("wall_margin_m", DEFAULT_WALL_MARGIN_M))
    max_attempts = int(options.get("max_attempts", 500))
    if length_m is not None and not (1000.0 <= float(length_m) <= 20000.0):
        raise TrackError(f"length_m must be between 1000 and 20000 m, got {length_m}")
    if width_m is not None and not (6.0 <= float(width_m) <= 30.0):
        raise TrackError(f"width_m must be between 6 and 30 m, got {width_m}")
    if not (0.1 <= ds <= 5.0):
        raise TrackError(f"ds must be between 0.1 and 5 m, got {ds}")
    if not (math.isfinite(wall_margin_m) and wall_margin_m >= 0.0):
        raise TrackError(f"wall_margin_m must be a non-negative number, got {wall_margin_m}")
    name = f"random:{seed}"
    for attempt in range(max_attempts):
        rng = np.random.default_rng([seed, attempt])
        track = _candidate(rng, length_m, width_m, ds, wall_margin_m, name, {"seed": seed, "attempt": attempt})
        if track is not None and check_track(track) is None:
            return track
    raise TrackError(f"could not generate a valid track for seed {seed} in {max_attempts} attempts "
                     f"(options {options}); try other options")

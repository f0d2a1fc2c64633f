"""Track specs and files: built-in names, ``random:SEED``, and CSV centreline files.

A *track spec* is one of

* a built-in circuit name (:func:`builtin_track_names`: ``oval``, ``club``,
  ``technical``, ``flowing``),
* ``random:SEED`` with ``SEED`` a non-negative integer: a procedurally generated
  circuit (:func:`racing.procgen.generate_track`),
* a path to a CSV file in the public racetrack-database layout::

      # x_m,y_m,w_tr_right_m,w_tr_left_m
      -1.20,3.40,7.1,7.3
      ...

  one row per centreline point in driving order (~5 m apart), forming a closed loop
  whose last row does **not** repeat the first. ``w_tr_right_m``/``w_tr_left_m`` are
  the distances from the centreline to the right/left track edge [m].

CSV rules (each broken rule is a :class:`racing.errors.TrackError` naming the file, the
line and the rule; never a traceback):

* The header may be written with or without the leading ``#`` and with or without
  spaces (``# x_m, y_m, w_tr_right_m, w_tr_left_m``). A file without a header is
  accepted when its first row is four numbers (the columns are then taken in the order
  above). Any other first line is an error.
* Blank lines and further ``#`` comment lines are skipped.
* Every row has exactly 4 comma-separated finite numbers; widths are positive.
* At least 10 points; no point may repeat the previous one, and the last point must not
  repeat the first (the loop closes by itself).
* Consecutive points (including last -> first) at most 50 m apart.
* The centreline must not cross itself.

The points get a light smoothing (a few passes of a [1, 2, 1]/4 filter, about 5 m of
Gaussian blur, the right amount for OSM-derived data sampled every 5 m) before the
spline fit. :func:`save_track_csv` writes the same layout.

The file ``racing/data/tracks/example.csv`` (:data:`EXAMPLE_CSV`) is a procedurally
generated circuit exported with :func:`save_track_csv`, for users to copy.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numba as nb
import numpy as np

from racing.errors import TrackError
from racing.track import DEFAULT_DS_M, DEFAULT_WALL_MARGIN_M, Track, build_track

#: Column names of the racetrack-database CSV layout, in order.
CSV_COLUMNS = ("x_m", "y_m", "w_tr_right_m", "w_tr_left_m")
#: The header line :func:`save_track_csv` writes.
CSV_HEADER = "# " + ",".join(CSV_COLUMNS)
#: A CSV needs at least this many points.
CSV_MIN_POINTS = 10
#: Largest allowed distance between consecutive CSV points [m].
CSV_MAX_SPACING_M = 50.0
#: Blur applied to CSV centrelines before fitting (standard deviation) [m].
CSV_SMOOTHING_SIGMA_M = 5.0
#: Example CSV shipped with the package.
EXAMPLE_CSV = Path(__file__).resolve().parent / "data" / "tracks" / "example.csv"


def builtin_track_names() -> list[str]:
    """Names of the built-in circuits."""
    from racing.circuits import circuit_names

    return circuit_names()


def load_track(spec, *, wall_margin_m: float | None = None) -> Track:
    """Load a track from a spec: a built-in name, ``random:SEED`` or a CSV path.

    ``wall_margin_m`` (default :data:`racing.track.DEFAULT_WALL_MARGIN_M`) is the run-off
    width from each track edge to its wall. Built-in and random tracks are cached.
    Raises :class:`TrackError` for an unknown name, a bad seed or a bad file.
    """
    margin = DEFAULT_WALL_MARGIN_M if wall_margin_m is None else float(wall_margin_m)
    if not (math.isfinite(margin) and margin >= 0.0):
        raise TrackError(f"wall margin must be a non-negative number of metres, got {wall_margin_m!r}")
    if isinstance(spec, os.PathLike):
        return load_csv_track(spec, wall_margin_m=margin)
    if not isinstance(spec, str):
        raise TrackError(f"a track spec must be a string (name, random:SEED or CSV path), got {type(spec).__name__}")
    text = spec.strip()
    names = builtin_track_names()
    if text in names:
        return _builtin(text, margin)
    low = text.lower()
    if low == "random":
        raise TrackError("'random' needs a seed here: use random:SEED (e.g. random:7) for a procedurally generated circuit")
    if low.startswith("random:"):
        seed_text = text.split(":", 1)[1].strip()
        if not seed_text.isdigit():
            raise TrackError(f"bad track spec '{spec}': the seed in random:SEED must be a non-negative integer, got '{seed_text}'")
        return _random(int(seed_text), margin)
    looks_like_path = text.lower().endswith(".csv") or os.sep in text or "/" in text or os.path.exists(text)
    if looks_like_path:
        return load_csv_track(text, wall_margin_m=margin)
    raise TrackError(
        f"unknown track '{spec}': use a built-in ({', '.join(names)}), random:SEED, or a path to a .csv file"
    )


@lru_cache(maxsize=32)
def _builtin(name: str, margin: float) -> Track:
    from racing.circuits import make_circuit_track

    return make_circuit_track(name, wall_margin_m=margin)


@lru_cache(maxsize=64)
def _random(seed: int, margin: float) -> Track:
    from racing.procgen import generate_track

    return generate_track(seed, wall_margin_m=margin)


# --------------------------------------------------------------------------- CSV
def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def read_track_csv(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read and validate a racetrack-database CSV file.

    Returns ``(xy, w_right, w_left, lines)``: points (n, 2) [m], widths (n,) [m] and the
    1-based line number of each point in the file. Raises :class:`TrackError` naming the
    file, the line and the rule for every problem listed in the module docstring.
    """
    p = str(path)
    try:
        with open(p, encoding="utf-8-sig") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise TrackError("track file not found", path=p) from None
    except IsADirectoryError:
        raise TrackError("is a directory, not a track CSV file", path=p) from None
    except UnicodeDecodeError:
        raise TrackError("is not a text (UTF-8) file; expected a CSV track file", path=p) from None
    except OSError as exc:
        raise TrackError(f"cannot read track file ({exc.strerror or exc})", path=p) from None

    lines = text.splitlines()
    rows: list[tuple[int, list[str]]] = []
    header_seen = False
    expected = ", ".join(CSV_COLUMNS)
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if not header_seen:
            header_seen = True
            body = line[1:] if line.startswith("#") else line
            cols = [c.strip().lower() for c in body.split(",")]
            if tuple(cols) == CSV_COLUMNS:
                continue
            if not line.startswith("#") and len(cols) == 4 and all(_is_number(c) for c in cols):
                pass  # no header: the first line is already data
            else:
                raise TrackError(
                    f"missing or wrong header: expected '{CSV_HEADER}' (columns {expected}), got '{line[:80]}'",
                    path=p, line=lineno)
        if line.startswith("#"):
            continue
        rows.append((lineno, [c.strip() for c in line.split(",")]))

    if not header_seen:
        raise TrackError(f"file is empty: expected the header '{CSV_HEADER}' and at least "
                         f"{CSV_MIN_POINTS} rows of points", path=p)

    data = np.empty((len(rows), 4))
    line_nos = np.empty(len(rows), dtype=np.int64)
    for k, (lineno, cols) in enumerate(rows):
        if len(cols) != 4:
            raise TrackError(f"expected 4 columns ({expected}), got {len(cols)}", path=p, line=lineno)
        for c, tok in enumerate(cols):
            try:
                val = float(tok)
            except ValueError:
                raise TrackError(f"column {CSV_COLUMNS[c]}: '{tok[:40]}' is not a number", path=p, line=lineno) from None
            if not math.isfinite(val):
                raise TrackError(f"column {CSV_COLUMNS[c]}: {tok} is not a finite number", path=p, line=lineno)
            if c >= 2 and val <= 0.0:
                raise TrackError(f"column {CSV_COLUMNS[c]}: track widths must be positive, got {tok}", path=p, line=lineno)
            data[k, c] = val
        line_nos[k] = lineno

    n = data.shape[0]
    if n < CSV_MIN_POINTS:
        raise TrackError(f"a track needs at least {CSV_MIN_POINTS} centreline points, got {n}", path=p,
                         line=int(line_nos[-1]) if n else None)
    xy = data[:, :2]
    step = np.hypot(*(np.roll(xy, -1, axis=0) - xy).T)  # step[i]: point i -> point i+1 (last -> first)
    if step[-1] == 0.0:
        raise TrackError(f"the last point repeats the first point (line {line_nos[0]}): the loop closes by itself, "
                         "remove the last row", path=p, line=int(line_nos[-1]))
    dup = np.flatnonzero(step[:-1] == 0.0)
    if dup.size:
        i = int(dup[0]) + 1
        raise TrackError(f"point repeats the previous point (line {line_nos[i - 1]}): duplicate consecutive points",
                         path=p, line=int(line_nos[i]))
    sparse = np.flatnonzero(step[:-1] > CSV_MAX_SPACING_M)
    if sparse.size:
        i = int(sparse[0]) + 1
        raise TrackError(f"point is {step[i - 1]:.1f} m from the previous point (line {line_nos[i - 1]}): points must be "
                         f"at most {CSV_MAX_SPACING_M:.0f} m apart (centreline too sparse)", path=p, line=int(line_nos[i]))
    if step[-1] > CSV_MAX_SPACING_M:
        raise TrackError(f"the last point is {step[-1]:.1f} m from the first point (line {line_nos[0]}): the file must "
                         f"describe a closed loop with points at most {CSV_MAX_SPACING_M:.0f} m apart",
                         path=p, line=int(line_nos[-1]))
    a, b = first_crossing(np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1]))
    if a >= 0:
        a2, b2 = (a + 1) % n, (b + 1) % n
        raise TrackError(f"the centreline crosses itself: the segment from line {line_nos[a]} to line {line_nos[a2]} "
                         f"crosses the segment from line {line_nos[b]} to line {line_nos[b2]}",
                         path=p, line=int(line_nos[b]))
    return xy.copy(), data[:, 2].copy(), data[:, 3].copy(), line_nos


@nb.njit(cache=True)
def first_crossing(xs, ys):
    """First pair ``(a, b)`` of non-adjacent segments of a closed polyline that cross
    (segment ``i`` runs from point ``i`` to ``i + 1``); ``(-1, -1)`` if none."""
    n = xs.shape[0]
    for a in range(n):
        a2 = a + 1 if a + 1 < n else 0
        ax0, ay0, ax1, ay1 = xs[a], ys[a], xs[a2], ys[a2]
        for b in range(a + 2, n):
            if a == 0 and b == n - 1:
                continue  # adjacent across the closing point
            b2 = b + 1 if b + 1 < n else 0
            bx0, by0, bx1, by1 = xs[b], ys[b], xs[b2], ys[b2]
            if max(bx0, bx1) < min(ax0, ax1) or min(bx0, bx1) > max(ax0, ax1):
                continue
            if max(by0, by1) < min(ay0, ay1) or min(by0, by1) > max(ay0, ay1):
                continue
            d1 = (bx1 - bx0) * (ay0 - by0) - (by1 - by0) * (ax0 - bx0)
            d2 = (bx1 - bx0) * (ay1 - by0) - (by1 - by0) * (ax1 - bx0)
            d3 = (ax1 - ax0) * (by0 - ay0) - (ay1 - ay0) * (bx0 - ax0)
            d4 = (ax1 - ax0) * (by1 - ay0) - (ay1 - ay0) * (bx1 - ax0)
            if d1 * d2 <= 0.0 and d3 * d4 <= 0.0 and not (d1 == 0.0 and d2 == 0.0):
                return a, b
            if d1 == 0.0 and d2 == 0.0:  # collinear: overlapping counts as crossing
                return a, b
    return -1, -1


def smoothing_passes(mean_spacing_m: float, sigma_m: float = CSV_SMOOTHING_SIGMA_M) -> int:
    """Passes of the [1, 2, 1]/4 filter that blur points ``mean_spacing_m`` apart by
    about ``sigma_m`` (each pass adds a variance of half a spacing squared)."""
    if mean_spacing_m <= 0:
        return 0
    return int(min(max(round(2.0 * (sigma_m / mean_spacing_m) ** 2), 0), 8))


def load_csv_track(path, *, wall_margin_m: float = DEFAULT_WALL_MARGIN_M, ds: float = DEFAULT_DS_M,
                   smooth: int | None = None, name: str | None = None) -> Track:
    """Load a racetrack-database CSV file as a :class:`Track` (see the module docstring).

    ``smooth`` overrides the number of smoothing passes (default: about 5 m of blur for
    the file's point spacing); ``name`` defaults to the file name without extension.
    """
    xy, wr, wl, _ = read_track_csv(path)
    if smooth is None:
        spacing = float(np.mean(np.hypot(*(np.roll(xy, -1, axis=0) - xy).T)))
        smooth = smoothing_passes(spacing)
    p = str(path)
    try:
        return build_track(name or Path(p).stem, xy, wr, wl, ds=ds, wall_margin_m=wall_margin_m,
                           source=p, smooth=smooth)
    except TrackError as exc:
        raise TrackError(str(exc), path=p) from None


def save_track_csv(track: Track, path, *, spacing_m: float = 5.0) -> Path:
    """Write ``track`` as a racetrack-database CSV (points ~``spacing_m`` apart).

    Returns the path written. The result loads back with :func:`load_track`.
    """
    if not spacing_m > 0:
        raise TrackError(f"spacing must be positive, got {spacing_m}")
    m = max(int(round(track.length / spacing_m)), CSV_MIN_POINTS)
    s = np.arange(m) * (track.length / m)
    x, y, _ = track.frenet_to_xy(s, 0.0)
    wl, wr = track.width_at(s)
    out = Path(path)
    lines = [CSV_HEADER]
    lines += [f"{a:.4f},{b:.4f},{c:.4f},{d:.4f}" for a, b, c, d in zip(x, y, wr, wl)]
    try:
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise TrackError(f"cannot write track file ({exc.strerror or exc})", path=str(out)) from None
    return out

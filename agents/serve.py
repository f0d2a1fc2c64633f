"""``racing serve``: a driver as an HTTP/JSON service, for game engines that would rather call
a process than embed ONNX.

``racing serve --driver D [--host 127.0.0.1] [--port 8000] [--token TOKEN] [--max-body-kb N]``
loads one :class:`agents.runtime.Driver` (``D`` is ``onnx:PATH`` or a ``.onnx`` file, run
without torch; or ``builtin``, a training run directory or a checkpoint, exported to ONNX at
start, which needs torch) and answers on FastAPI + uvicorn; the OpenAPI schema is at
``/openapi.json``, interactive docs at ``/docs``.

Endpoints (JSON in and out; errors are ``{"error": MESSAGE, "detail": [...]}``):

=================  ===========================================================================
``GET /health``    ``{"status": "ok"}``; never needs the token
``GET /driver``    the driver: observation size, control rate, vehicle (all parameters),
                   project version, where it was trained, the state fields a car sends
``GET /tracks``    the tracks usable in ``/act``: the built-in circuits and the loaded ones
``POST /tracks``   load a track under a name: ``{"name": N, "builtin": "club" | "random:SEED"}``
                   or ``{"name": N, "centreline": [[x, y, w_left, w_right], ...]}``
``DELETE /tracks/{name}``  unload a loaded track
``POST /act``      actions for the cars of one race: ``{"track": T, "cars": [{"id": ..., "x": ...,
                   ...}], "reset": false}`` -> ``{"actions": [{"id", "steer", "throttle_brake"}]}``
``POST /reset``    forget the skill memory (reaction lag, noise) of some cars or of all
=================  ===========================================================================

Safety: the server listens on 127.0.0.1 unless ``--host`` says otherwise; with ``--token``
(or ``RACING_SERVE_TOKEN``) every request except ``/health``, ``/openapi.json`` and ``/docs``
needs ``Authorization: Bearer TOKEN``. Bodies over ``--max-body-kb`` get 413, bad input a 4xx
with a JSON message; clients can never name a file on the server (tracks are built-in names,
``random:SEED`` or uploaded centrelines).

Library use: :func:`create_app` builds the app, :func:`serve_in_thread` runs it on a free port
in a background thread (tests, ``racing bench``), :func:`example_cars` gives car states on the
starting grid of a track.
"""

# no "from __future__ import annotations": FastAPI reads the endpoint annotations, which name
# models built inside functions
import argparse
import hmac
import ipaddress
import logging
import math
import os
import re
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np

from racing.errors import ConfigError, RacingError

log = logging.getLogger("racing.serve")

#: Environment variable read when ``--token`` is not given.
TOKEN_ENV = "RACING_SERVE_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_KB = 1024
#: Most cars in one ``/act`` request (all in one race).
MAX_CARS = 256
#: Most tracks loaded with ``POST /tracks`` at a time (built-in circuits do not count).
MAX_LOADED_TRACKS = 32
#: Most points of an uploaded centreline, and the longest track it may describe.
MAX_CENTRELINE_POINTS = 10_000
MAX_TRACK_LENGTH_M = 50_000.0
#: Cars whose skill memory the server keeps (least recently driven are forgotten first).
MAX_REMEMBERED_CARS = 4096
#: Paths that never need the token.
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect"})

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"


# ============================================================================ driver loading
def load_driver(spec: str, *, threads: int = 1, seed: int = 0):
    """The :class:`agents.runtime.Driver` for a driver spec: ``onnx:PATH`` or a ``.onnx`` /
    ``.json`` path is loaded as is (no torch); anything else (``builtin``, a training run
    directory, a checkpoint, a ``driver.pt``) is exported to ONNX in a temporary directory
    first (:func:`agents.export.export_driver`, needs torch). A :class:`ConfigError` for a
    bad spec."""
    from agents.runtime import Driver

    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("--driver is required: onnx:PATH (an exported driver.onnx), builtin, a training run "
                          "directory or a checkpoint")
    spec = spec.strip()
    path = spec[len("onnx:"):] if spec.startswith("onnx:") else spec
    if spec.startswith("onnx:") or path.endswith((".onnx", ".json")):
        if "@" in path and path.rpartition("@")[0].endswith(".onnx"):
            raise ConfigError(f"'{spec}': the server takes the skill per car in each /act request; drop the '@SKILL'")
        if not path:
            raise ConfigError("onnx: give the exported file, e.g. onnx:driver.onnx")
        return Driver(path, threads=threads, seed=seed)
    if spec.startswith("scripted"):
        raise ConfigError(f"'{spec}': scripted drivers are not served; serve a trained driver (builtin, a run "
                          f"directory, a checkpoint) or an exported onnx:PATH")
    try:
        from agents.export import export_driver
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError(f"serving '{spec}' exports it to ONNX first, which needs {exc.name} "
                          f"(pip install 'racing-rl[train,export]'); or serve an exported onnx:PATH") from None
    with tempfile.TemporaryDirectory(prefix="racing-serve-") as tmp:
        try:
            onnx_path, _ = export_driver(spec, Path(tmp) / "driver.onnx")
        except ModuleNotFoundError as exc:  # torch / onnx missing
            raise ConfigError(f"serving '{spec}' exports it to ONNX first, which needs {exc.name} "
                              f"(pip install 'racing-rl[train,export]'); or serve an exported onnx:PATH") from None
        # onnxruntime holds the model in memory: the temporary files can go
        return Driver(onnx_path, threads=threads, seed=seed)


def example_cars(track, n: int = 1, *, skill: float = 1.0, prefix: str = "car") -> list[dict]:
    """JSON-ready states of ``n`` cars standing on the starting grid of ``track`` (a
    :class:`racing.track.Track` or a spec): the ``cars`` of an ``/act`` request."""
    from racing.sim import grid_positions
    from racing.trackio import load_track

    if isinstance(track, str):
        track = load_track(track)
    s, d = grid_positions(track, int(n))
    x, y, yaw = track.frenet_to_xy(s, d)
    x, y, yaw = np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(yaw)
    cars = []
    for k in range(int(n)):
        car = dict(id=f"{prefix}{k + 1}", x=round(float(x[k]), 3), y=round(float(y[k]), 3),
                   yaw=round(float(yaw[k]), 5), vx=0.0, vy=0.0, yaw_rate=0.0, prev_steer=0.0, prev_throttle_brake=0.0)
        if skill != 1.0:
            car["skill"] = float(skill)
        cars.append(car)
    return cars


# ============================================================================ tracks
def build_centreline_track(name: str, points, *, smooth: int | None = None):
    """A :class:`racing.track.Track` from uploaded centreline points ``(n, 4)``:
    ``[x, y, w_left, w_right]`` per point in driving order, the loop closing by itself. The
    rules are those of a CSV track file (:mod:`racing.trackio`): at least 10 points, none
    repeating the previous one, at most 50 m apart, the line not crossing itself; widths
    positive. A :class:`racing.errors.TrackError` names the broken rule."""
    from racing.errors import TrackError
    from racing.track import build_track
    from racing.trackio import CSV_MAX_SPACING_M, CSV_MIN_POINTS, first_crossing, smoothing_passes

    data = np.asarray(points, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 4:
        raise TrackError(f"centreline must be a list of [x, y, w_left, w_right] points, got shape {data.shape}")
    n = data.shape[0]
    if n < CSV_MIN_POINTS:
        raise TrackError(f"a track needs at least {CSV_MIN_POINTS} centreline points, got {n}")
    if n > MAX_CENTRELINE_POINTS:
        raise TrackError(f"a centreline may have at most {MAX_CENTRELINE_POINTS} points, got {n}")
    if not np.all(np.isfinite(data)):
        raise TrackError("centreline points must be finite numbers")
    if np.any(data[:, 2:] <= 0.0):
        k = int(np.flatnonzero(np.any(data[:, 2:] <= 0.0, axis=1))[0])
        raise TrackError(f"point {k}: track widths must be positive")
    xy = np.ascontiguousarray(data[:, :2])
    step = np.hypot(*(np.roll(xy, -1, axis=0) - xy).T)  # step[i]: point i -> i+1 (last -> first)
    if step[-1] == 0.0:
        raise TrackError(f"the last point (point {n - 1}) repeats the first: the loop closes by itself, drop it")
    dup = np.flatnonzero(step[:-1] == 0.0)
    if dup.size:
        raise TrackError(f"point {int(dup[0]) + 1} repeats the previous point")
    sparse = np.flatnonzero(step > CSV_MAX_SPACING_M)
    if sparse.size:
        i = int(sparse[0])
        raise TrackError(f"points {i} and {(i + 1) % n} are {step[i]:.1f} m apart: consecutive points (and the last "
                         f"and the first) must be at most {CSV_MAX_SPACING_M:.0f} m apart")
    if float(step.sum()) > MAX_TRACK_LENGTH_M:
        raise TrackError(f"the centreline is {step.sum() / 1000:.1f} km long; at most {MAX_TRACK_LENGTH_M / 1000:.0f} km")
    a, b = first_crossing(np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1]))
    if a >= 0:
        raise TrackError(f"the centreline crosses itself: the segment from point {a} to {(a + 1) % n} crosses the "
                         f"segment from point {b} to {(b + 1) % n}")
    if smooth is None:
        smooth = smoothing_passes(float(np.mean(step)))
    return build_track(name, xy, data[:, 3], data[:, 2], source="uploaded", smooth=int(smooth))


class _Tracks:
    """The tracks a server knows: built-in circuits by name, plus loaded ones."""

    def __init__(self, driver):
        from racing.trackio import builtin_track_names

        self.driver = driver
        self.builtin = tuple(builtin_track_names())
        self.loaded: dict[str, tuple[Any, str]] = {}  # name -> (Track, kind)
        self.lock = threading.Lock()

    def get(self, name: str):
        with self.lock:
            entry = self.loaded.get(name)
        if entry is not None:
            return entry[0]
        if name in self.builtin:
            from racing.trackio import load_track

            return load_track(name)
        known = list(self.builtin) + sorted(self.loaded)
        raise _NotFound(f"unknown track '{name}'; known: {', '.join(known)} (load more with POST /tracks)")

    def check_new(self, name: str) -> None:
        """A conflict if ``name`` cannot be loaded (a built-in name, or no room left)."""
        if name in self.builtin:
            raise _Conflict(f"'{name}' is a built-in track name; choose another name")
        with self.lock:
            if name not in self.loaded and len(self.loaded) >= MAX_LOADED_TRACKS:
                raise _Conflict(f"{MAX_LOADED_TRACKS} tracks are loaded; unload one first (DELETE /tracks/NAME)")

    def add(self, name: str, track, kind: str) -> None:
        """Load ``track`` as ``name`` (replacing a loaded track of that name)."""
        if name in self.builtin:
            raise _Conflict(f"'{name}' is a built-in track name; choose another name")
        with self.lock:
            if name not in self.loaded and len(self.loaded) >= MAX_LOADED_TRACKS:
                raise _Conflict(f"{MAX_LOADED_TRACKS} tracks are loaded; unload one first (DELETE /tracks/NAME)")
            self.loaded[name] = (track, kind)

    def remove(self, name: str) -> None:
        if name in self.builtin:
            raise _Conflict(f"'{name}' is a built-in track and cannot be unloaded")
        with self.lock:
            if self.loaded.pop(name, None) is None:
                raise _NotFound(f"no loaded track '{name}'")

    def listing(self) -> list[tuple[str, Any, str]]:
        from racing.trackio import load_track

        with self.lock:
            loaded = list(self.loaded.items())
        return [(n, load_track(n), "builtin") for n in self.builtin] + [(n, t, kind) for n, (t, kind) in loaded]


class _NotFound(Exception):
    pass


class _Conflict(Exception):
    pass


# ============================================================================ the app
def _models():
    """The pydantic request and response models (built on first use: pydantic is imported lazily)."""
    global _MODELS
    if _MODELS is not None:
        return _MODELS
    from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StrictBool, StrictStr, Tag

    from agents.runtime import OPTIONAL_FIELDS, REQUIRED_FIELDS
    from racing.trackio import builtin_track_names

    def num(doc: str, lo: float, hi: float, **kw):
        # strict: a JSON number only (no strings, no booleans); finite (allow_inf_nan=False)
        return Annotated[float, Field(strict=True, allow_inf_nan=False, ge=lo, le=hi, description=doc or None, **kw)]

    def opt(name: str, lo: float, hi: float):
        return Annotated[Union[num(OPTIONAL_FIELDS[name], lo, hi), None],
                         Field(description=OPTIONAL_FIELDS[name] + " (leave out, or null, to let the server derive it; "
                                                                   "give it for every car of a request or for none)")]

    # a JSON integer: 3 or 3.0 (JSON Schema's "integer"), not true, "3" or 3.5
    def integer(lo: int, hi: int):
        return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_json_int)]

    r = REQUIRED_FIELDS
    CarId = Annotated[Union[Annotated[StrictStr, Field(min_length=1, max_length=64)],
                            integer(-(2**53), 2**53)],
                      Field(description="a stable identifier of the car (string or integer), unique in the request; "
                                        "the server keeps each car's skill memory under it (use ids unique to your "
                                        "race when several games share a server)")]
    TrackName = Annotated[StrictStr, Field(pattern=NAME_PATTERN, description="a track name: a built-in circuit or one "
                                                                             "loaded with POST /tracks")]
    Unit = num("", -1.0, 1.0)

    class Request(BaseModel):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    class CarState(Request):
        """One car's state (SI units; world frame x east / y north, yaw counter-clockwise from x;
        velocities in the car's body frame, x forward, y left)."""

        id: CarId
        x: num(r["x"], -1e6, 1e6)
        y: num(r["y"], -1e6, 1e6)
        yaw: num(r["yaw"] + " (any angle, no wrapping needed)", -1e6, 1e6)
        vx: num(r["vx"], -1000.0, 1000.0)
        vy: num(r["vy"], -1000.0, 1000.0)
        yaw_rate: num(r["yaw_rate"], -1000.0, 1000.0)
        prev_steer: num(r["prev_steer"], -1.0, 1.0)
        prev_throttle_brake: num(r["prev_throttle_brake"], -1.0, 1.0)
        steer_angle: opt("steer_angle", -math.pi, math.pi) = None
        ax: opt("ax", -1e5, 1e5) = None
        ay: opt("ay", -1e5, 1e5) = None
        slip_front: opt("slip_front", -10.0, 10.0) = None
        slip_rear: opt("slip_rear", -10.0, 10.0) = None
        load_front: opt("load_front", 0.0, 1e7) = None
        load_rear: opt("load_rear", 0.0, 1e7) = None
        wall_contact: Annotated[Union[integer(0, 1), None],
                                Field(description=OPTIONAL_FIELDS["wall_contact"])] = None
        skill: num("difficulty in [0, 1]: 1 is the unmodified driver; lower values cap the speed, slow the "
                   "reactions and add noise (memory per car id between requests)", 0.0, 1.0) = 1.0

    class ActRequest(Request):
        """The cars of one race on one track, at one control step."""

        track: TrackName
        cars: list[CarState] = Field(min_length=1, max_length=MAX_CARS,
                                     description=f"1 to {MAX_CARS} cars, all in the same race (a driver that sees "
                                                 "opponents sees the other cars of the request)")
        reset: StrictBool = Field(False, description="forget the skill memory of these cars first (a race restart)")

    class Action(BaseModel):
        id: Union[str, int]
        steer: float = Field(ge=-1.0, le=1.0, description="steering command; positive turns left")
        throttle_brake: float = Field(ge=-1.0, le=1.0, description="throttle (+) or brake (-)")

    class ActResponse(BaseModel):
        track: str
        control_hz: float = Field(description="apply the actions for 1 / control_hz seconds, then ask again")
        actions: list[Action] = Field(description="one per car, in the order of the request")

    builtin_specs = "|".join(re.escape(n) for n in builtin_track_names())

    class BuiltinTrack(Request):
        """Load a built-in circuit or a procedurally generated one."""

        name: Annotated[Union[TrackName, None], Field(description="the name to use in /act (default: the spec)")] = None
        builtin: Annotated[StrictStr, Field(pattern=rf"^(?:{builtin_specs}|random:[0-9]{{1,9}})$",
                                            description="a built-in circuit name or random:SEED")]

    Coord = num("", -1e6, 1e6)
    Width = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0.0, le=100.0)]

    class CentrelineTrack(Request):
        """Upload a track: the closed centreline in driving order (the last point does not
        repeat the first), points at most 50 m apart, with the distances to the left and
        right track edges [m]."""

        name: TrackName
        centreline: list[tuple[Coord, Coord, Width, Width]] = Field(
            min_length=10, max_length=MAX_CENTRELINE_POINTS,
            description="[[x, y, w_left, w_right], ...] in metres, world frame")
        smooth: Annotated[Union[integer(0, 8), None],
                          Field(description="passes of a [1, 2, 1]/4 smoothing filter over the points (default: about "
                                            "5 m of blur, as for CSV track files; 0 for exact centrelines)")] = None

    def upload_kind(v):
        has = ("centreline" in v) if isinstance(v, dict) else hasattr(v, "centreline")
        return "CentrelineTrack" if has else "BuiltinTrack"

    # a body with "centreline" is an upload, anything else a built-in: errors name one model only
    TrackUpload = Annotated[Union[Annotated[BuiltinTrack, Tag("BuiltinTrack")],
                                  Annotated[CentrelineTrack, Tag("CentrelineTrack")]], Discriminator(upload_kind)]

    class TrackInfo(BaseModel):
        name: str
        kind: Literal["builtin", "generated", "uploaded"]
        source: str
        length_m: float
        corners: int
        min_radius_m: float
        width_m: list[float] = Field(min_length=2, max_length=2, description="narrowest and widest total width [m]")

    class TrackList(BaseModel):
        tracks: list[TrackInfo]

    class ResetRequest(Request):
        ids: Union[list[CarId], None] = Field(None, max_length=4096,
                                              description="the cars to forget (default: all cars)")

    class ResetResponse(BaseModel):
        reset: Union[Literal["all"], list[Union[str, int]]]

    class Health(BaseModel):
        status: Literal["ok"]

    class ActionSpec(BaseModel):
        index: int
        name: str
        low: float
        high: float
        description: str

    class VehicleInfo(BaseModel):
        name: str
        params: dict[str, Union[float, str]] = Field(description="every vehicle parameter (SI units; see "
                                                                 "racing.vehicle.VehicleParams)")

    class DriverInfo(BaseModel):
        driver: str = Field(description="the driver spec the server was started with")
        project_version: str = Field(description="racing-rl version of the server")
        exported_with_version: str = Field(description="racing-rl version that exported the driver")
        obs_dim: int
        action_dim: int
        actions: list[ActionSpec]
        control_hz: float
        vehicle: VehicleInfo
        training: dict[str, Any] = Field(description="where the policy was trained (spec's 'training')")
        required_fields: dict[str, str]
        optional_fields: dict[str, str]
        max_cars: int

    class Deleted(BaseModel):
        deleted: str

    class ErrorItem(BaseModel):
        loc: list[Union[str, int]]
        msg: str
        type: str

    class ErrorBody(BaseModel):
        error: str
        detail: Union[list[ErrorItem], None] = None

    _MODELS = dict(CarState=CarState, ActRequest=ActRequest, ActResponse=ActResponse, BuiltinTrack=BuiltinTrack,
                   TrackUpload=TrackUpload, CentrelineTrack=CentrelineTrack, TrackInfo=TrackInfo, TrackList=TrackList, ResetRequest=ResetRequest,
                   ResetResponse=ResetResponse, Health=Health, DriverInfo=DriverInfo, Deleted=Deleted,
                   ErrorBody=ErrorBody)
    return _MODELS


_MODELS: dict | None = None


def _json_int(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("Input should be a valid integer")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError("Input should be a valid integer")
        return int(v)
    return v


def _error_body(message: str, detail=None) -> dict:
    out = {"error": message}
    if detail is not None:
        out["detail"] = detail
    return out


def _validation_detail(errors) -> tuple[str, list[dict], bool]:
    """A one-line message, compact error items (never echoing the input) and whether the body
    was not JSON at all."""
    items = []
    for e in errors:
        loc = [p if isinstance(p, (str, int)) else str(p) for p in e.get("loc", ())]
        items.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    if not items:
        return "invalid request", items, False
    malformed = any(i["type"] == "json_invalid" for i in items)
    if malformed:
        e = next(e for e in errors if e.get("type") == "json_invalid")
        pos = e.get("loc", ("body", "?"))[-1]
        reason = (e.get("ctx") or {}).get("error") or "not valid JSON"
        return f"malformed JSON at character {pos}: {reason}", items, True
    first = items[0]
    where = ".".join(str(p) for p in first["loc"][1:] if p != "body") if first["loc"][:1] == ["body"] else \
        ".".join(str(p) for p in first["loc"])
    msg = (f"{where}: " if where else "") + first["msg"]
    if len(items) > 1:
        msg += f" (and {len(items) - 1} more)"
    return msg, items, malformed


class _TooBig:
    """The 413 answer, built only when needed."""

    def __init__(self, limit: int):
        self.limit = limit

    async def __call__(self, scope, receive, send):
        from starlette.responses import JSONResponse

        resp = JSONResponse(_error_body(f"request body too large (limit {self.limit} bytes; racing serve "
                                        f"--max-body-kb)"), status_code=413)
        return await resp(scope, receive, send)


class _Guard:
    """ASGI middleware: the bearer token (before anything else is read) and the body size
    limit (the body is read here, at most ``max_body`` bytes, and handed on)."""

    def __init__(self, app, *, token: str | None, max_body: int):
        self.app = app
        self.token = None if token is None else token.encode()
        self.max_body = int(max_body)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.responses import JSONResponse

        headers = dict(scope.get("headers") or ())
        if self.token is not None and scope.get("path") not in PUBLIC_PATHS:
            scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)):
                resp = JSONResponse(_error_body("missing or wrong token: send 'Authorization: Bearer TOKEN'"),
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
                return await resp(scope, receive, send)
        too_big = _TooBig(self.max_body)
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await JSONResponse(_error_body("bad Content-Length header"), status_code=400)(scope, receive, send)
            if declared > self.max_body:
                return await too_big(scope, receive, send)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_body:
                return await too_big(scope, receive, send)
            if body:
                chunks.append(body)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def create_app(driver, token: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_KB * 1024, *,
               driver_name: str | None = None):
    """The FastAPI app serving ``driver`` (an :class:`agents.runtime.Driver`, or a driver
    spec loaded with :func:`load_driver`). ``token``: the bearer token every request but
    ``/health`` and the docs needs (None: no token). ``max_body_bytes``: larger bodies get 413."""
    from fastapi import Body, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from agents.export import project_version
    from agents.runtime import OPTIONAL_FIELDS, REQUIRED_FIELDS

    if isinstance(driver, str):
        driver_name = driver_name or driver
        driver = load_driver(driver)
    if token is not None:
        _check_token(token)
    if not (isinstance(max_body_bytes, int) and max_body_bytes >= 1):
        raise ConfigError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
    M = _models()
    version = project_version()
    tracks = _Tracks(driver)
    lock = threading.Lock()  # one driver, one call at a time (it keeps per-car memory)
    name = driver_name or getattr(driver, "name", "driver")

    app = FastAPI(
        title="racing-rl driver server",
        version=version,
        description="A trained racing driver behind HTTP/JSON: send the states of the cars of a race each control "
                    "step (POST /act), get back their actions [steer, throttle_brake] in [-1, 1]. Units are SI; "
                    "see GET /driver for the fields, the control rate and the vehicle the driver was trained with.",
        docs_url="/docs", redoc_url=None, openapi_url="/openapi.json",
    )
    app.state.driver = driver
    app.state.tracks = tracks

    err = {"model": M["ErrorBody"]}
    common = {400: {**err, "description": "Malformed request (not JSON)"},
              422: {**err, "description": "Invalid request: wrong shapes, types, ranges or values"}}
    post = {**common, 413: {**err, "description": "Request body too large"},
            415: {**err, "description": "Body not sent as application/json"}}

    # ------------------------------------------------------------ errors
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        if isinstance(getattr(exc, "body", None), (bytes, bytearray)):  # a body FastAPI did not read as JSON
            return JSONResponse(_error_body(f"send the body as JSON, with the header 'Content-Type: application/json' "
                                            f"(got {request.headers.get('content-type') or 'no Content-Type'})"),
                                status_code=415)
        message, items, malformed = _validation_detail(exc.errors())
        return JSONResponse(_error_body(message, items), status_code=400 if malformed else 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return JSONResponse(_error_body(str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(_NotFound)
    async def _not_found(request: Request, exc: _NotFound):
        return JSONResponse(_error_body(str(exc)), status_code=404)

    @app.exception_handler(_Conflict)
    async def _conflict(request: Request, exc: _Conflict):
        return JSONResponse(_error_body(str(exc)), status_code=409)

    @app.exception_handler(RacingError)
    async def _racing(request: Request, exc: RacingError):
        return JSONResponse(_error_body(str(exc)), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return JSONResponse(_error_body(f"internal error ({type(exc).__name__}); the server log has the details"),
                            status_code=500)

    # ------------------------------------------------------------ endpoints
    @app.get("/health", response_model=M["Health"], tags=["server"], summary="Liveness (no token needed)")
    def health():
        return {"status": "ok"}

    spec = driver.spec
    driver_info = dict(
        driver=name, project_version=version,
        exported_with_version=str(spec.get("project", {}).get("version", "unknown")),
        obs_dim=int(driver.obs_dim), action_dim=2,
        actions=list(spec.get("action", {}).get("elements", [])),
        control_hz=float(driver.control_hz),
        vehicle={"name": driver.vehicle.name, "params": dict(spec["vehicle"]["params"])},
        training=dict(spec.get("training", {})),
        required_fields=dict(REQUIRED_FIELDS), optional_fields=dict(OPTIONAL_FIELDS), max_cars=MAX_CARS)

    @app.get("/driver", response_model=M["DriverInfo"], tags=["driver"], responses=common,
             summary="The driver: observation, control rate, vehicle, version, training source")
    def get_driver():
        return driver_info

    def track_info(tname: str, track, kind: str) -> dict:
        d = track.describe()
        return dict(name=tname, kind=kind, source=str(d["source"]), length_m=float(d["length_m"]),
                    corners=int(d["corners"]), min_radius_m=float(d["min_radius_m"]),
                    width_m=[float(w) for w in d["width_m"]])

    @app.get("/tracks", response_model=M["TrackList"], tags=["tracks"], responses=common,
             summary="The tracks usable in /act")
    def list_tracks():
        return {"tracks": [track_info(n, t, kind) for n, t, kind in tracks.listing()]}

    TrackUpload = Annotated[M["TrackUpload"], Body()]

    @app.post("/tracks", response_model=M["TrackInfo"], status_code=201, tags=["tracks"],
              responses={**post, 409: {**err, "description": "Name taken by a built-in track, or too many tracks"}},
              summary="Load a track: a built-in or random:SEED circuit, or an uploaded centreline")
    def load_track_endpoint(req: TrackUpload):
        from racing.errors import TrackError
        from racing.trackio import load_track

        if isinstance(req, M["BuiltinTrack"]):
            tname = req.name or req.builtin
            if tname == req.builtin and req.builtin in tracks.builtin:  # usable by name already
                return track_info(tname, load_track(tname), "builtin")
            tracks.check_new(tname)
            track = load_track(req.builtin)
            kind = "builtin" if req.builtin in tracks.builtin else "generated"
        else:
            tname, kind = req.name, "uploaded"
            tracks.check_new(tname)
            try:
                track = build_centreline_track(tname, req.centreline, smooth=req.smooth)
            except RacingError:
                raise
            except Exception as exc:  # arbitrary geometry: whatever fails is the upload's fault
                log.warning("centreline upload '%s' failed: %r", tname, exc)
                raise TrackError(f"the centreline could not be built into a track ({type(exc).__name__}: {exc})") from None
        # the reference lap (the speed cap of skills < 1) now rather than in the first /act;
        # outside the driver's lock (reference_lap is a cached pure function): /act goes on
        try:
            driver.reference(track)
        except Exception as exc:
            log.warning("reference lap of track '%s' failed: %r", tname, exc)
            raise TrackError(f"no reference lap on this track ({type(exc).__name__}: {exc})") from None
        tracks.add(tname, track, kind)
        return track_info(tname, track, kind)

    @app.delete("/tracks/{name}", response_model=M["Deleted"], tags=["tracks"],
                responses={**common, 404: {**err, "description": "No loaded track of that name"},
                           409: {**err, "description": "A built-in track"}},
                summary="Unload a loaded track")
    def delete_track(name: str):
        tracks.remove(name)
        return {"deleted": name}

    @app.post("/act", response_model=M["ActResponse"], tags=["driver"],
              responses={**post, 404: {**err, "description": "Unknown track"}},
              summary="Actions for the cars of one race")
    def act(req: M["ActRequest"]):
        track = tracks.get(req.track)
        ids = [c.id for c in req.cars]
        if len(set(ids)) != len(ids):
            seen, dup = set(), None
            for i in ids:
                if i in seen:
                    dup = i
                    break
                seen.add(i)
            raise ConfigError(f"cars: id {dup!r} appears more than once")
        states = [c.model_dump(exclude={"id", "skill"}, exclude_none=True) for c in req.cars]
        skills = [c.skill for c in req.cars]
        skill = 1.0 if all(s >= 1.0 for s in skills) else skills
        with lock:
            if req.reset:
                driver.reset(ids)
            actions = driver.act(track, states, skill=skill, ids=ids)
            driver.bound_memory(MAX_REMEMBERED_CARS, recent=ids)
        actions = np.asarray(actions, dtype=np.float64)
        if not np.all(np.isfinite(actions)):
            raise ConfigError("the driver produced no finite action for these states (values far outside what it "
                              "was trained on?)")
        actions = np.clip(actions, -1.0, 1.0)
        return {"track": req.track, "control_hz": float(driver.control_hz),
                "actions": [{"id": i, "steer": float(a[0]), "throttle_brake": float(a[1])}
                            for i, a in zip(ids, actions)]}

    @app.post("/reset", response_model=M["ResetResponse"], tags=["driver"], responses=post,
              summary="Forget the skill memory (reaction lag, noise) of some cars, or of all")
    def reset(req: Annotated[Union[M["ResetRequest"], None], Body()] = None):
        ids = None if req is None else req.ids
        with lock:
            driver.reset(ids)
        return {"reset": "all" if ids is None else list(ids)}

    # ------------------------------------------------------------ schema: the token
    base_openapi = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = base_openapi()
            if token is not None:
                schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                    "type": "http", "scheme": "bearer",
                    "description": "racing serve --token TOKEN: send 'Authorization: Bearer TOKEN'"}
                for path, ops in schema.get("paths", {}).items():
                    if path in PUBLIC_PATHS:
                        continue
                    for op in ops.values():
                        op["security"] = [{"bearer": []}]
                        op.setdefault("responses", {})["401"] = {
                            "description": "Missing or wrong token",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    app.add_middleware(_Guard, token=token, max_body=max_body_bytes)
    return app


def _check_token(token) -> str:
    if not isinstance(token, str) or not token or not re.fullmatch(r"[\x21-\x7e]+", token):
        raise ConfigError("--token must be a non-empty string of visible ASCII characters (no spaces)")
    return token


# ============================================================================ running
def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); a ConfigError if impossible."""
    if not (isinstance(port, int) and 0 <= port <= 65535):
        raise ConfigError(f"--port must be in 0..65535, got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@contextmanager
def serve_in_thread(driver, host: str = DEFAULT_HOST, port: int = 0, token: str | None = None, *,
                    max_body_bytes: int = DEFAULT_MAX_BODY_KB * 1024, log_level: str = "warning"):
    """Run the server for ``driver`` (a runtime Driver, a driver spec, or an app from
    :func:`create_app`) with uvicorn in a background thread; yields its base URL
    (``http://127.0.0.1:PORT``) once it answers, and shuts it down on exit."""
    import uvicorn

    app = driver if hasattr(driver, "router") else create_app(driver, token=token, max_body_bytes=max_body_bytes)
    sock = _bind(host, port)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="racing-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30.0
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server thread stopped during start-up (see the log)")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 30 s")
            time.sleep(0.01)
        url = _url(sock)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _curl_example(url: str, track: str, token: bool) -> str:
    import json

    try:
        cars = example_cars(track, 1)
    except RacingError:  # pragma: no cover - the built-ins always load
        cars = [dict(id="car1", x=0.0, y=0.0, yaw=0.0, vx=0.0, vy=0.0, yaw_rate=0.0, prev_steer=0.0,
                     prev_throttle_brake=0.0)]
    body = json.dumps({"track": track, "cars": cars}, separators=(",", ":"))
    auth = f" -H \"Authorization: Bearer ${TOKEN_ENV}\"" if token else ""
    return f"curl -s {url}/act -H 'Content-Type: application/json'{auth} -d '{body}'"


def _cmd(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ModuleNotFoundError as exc:
        raise ConfigError(f"racing serve needs {exc.name}: pip install 'racing-rl[serve]'") from None
    token = args.token if args.token is not None else (os.environ.get(TOKEN_ENV) or None)
    if token is not None:
        _check_token(token)
    if not (1 <= args.max_body_kb <= 1_000_000):
        raise ConfigError(f"--max-body-kb must be in 1..1000000, got {args.max_body_kb}")
    if not (1 <= args.threads <= 64):
        raise ConfigError(f"--threads must be in 1..64, got {args.threads}")
    sock = _bind(args.host, args.port)  # first: a taken port fails before a long driver export
    try:
        driver = load_driver(args.driver, threads=args.threads)
        app = create_app(driver, token=token, max_body_bytes=args.max_body_kb * 1024, driver_name=args.driver)
    except BaseException:
        sock.close()
        raise
    url = _url(sock)
    print(f"racing serve: {args.driver} ({driver.obs_dim} observations, {driver.control_hz:g} Hz, vehicle "
          f"{driver.vehicle.name}) listening on {url}", flush=True)
    print(f"  API docs {url}/docs, schema {url}/openapi.json; token: "
          f"{'required (Authorization: Bearer ...)' if token else 'none'}", flush=True)
    if not _is_loopback(args.host) and token is None:
        print(f"  warning: listening on {args.host} without a token: anyone who can reach this port can use the "
              f"server (racing serve --token, or {TOKEN_ENV})", flush=True)
    print(f"  try: {_curl_example(url, 'club', token is not None)}", flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, access_log=args.log_level in ("info", "debug"),
                            lifespan="off", timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a driver over HTTP/JSON (for game engines)",
                       description="Serve a trained driver as an HTTP/JSON service: POST /act with the states of the "
                                   "cars of a race, get their actions. OpenAPI schema at /openapi.json, docs at /docs.")
    p.add_argument("--driver", required=True,
                   help="onnx:PATH or a .onnx file (an exported driver, no torch needed); or builtin, a training run "
                        "directory or a checkpoint (exported to ONNX at start, needs torch)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine "
                                                        "only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--token", default=None,
                   help=f"require 'Authorization: Bearer TOKEN' on every request but /health and the docs "
                        f"(default: ${TOKEN_ENV} if set, else no token)")
    p.add_argument("--max-body-kb", type=int, default=DEFAULT_MAX_BODY_KB,
                   help=f"largest request body in KiB; larger ones get 413 (default {DEFAULT_MAX_BODY_KB})")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level; info logs every request (default warning)")
    p.set_defaults(func=_cmd)

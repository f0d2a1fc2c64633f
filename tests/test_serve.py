"""``racing serve``: the HTTP/JSON driver server (agents/serve.py) and its example client."""

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

from agents.serve import (  # noqa: E402
    MAX_CARS, build_centreline_track, create_app, example_cars, load_driver, serve_in_thread,
)
from racing.errors import ConfigError  # noqa: E402
from racing.trackio import load_track  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def runtime(exported_builtin):
    """A runtime Driver of the same exported file, to compare the server with."""
    from agents.runtime import Driver

    return Driver(exported_builtin)


@pytest.fixture(scope="module")
def server(exported_builtin):
    with serve_in_thread(f"onnx:{exported_builtin}", token=TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, headers=AUTH, timeout=30.0) as c:
        yield c


def moving_cars(track_name="club", n=3):
    """Cars spread around the lap, moving, with the optional fields given for every car."""
    track = load_track(track_name)
    s = np.linspace(100.0, 0.8 * track.length, n)
    d = np.linspace(-2.0, 2.0, n)
    x, y, h = track.frenet_to_xy(s, d)
    return [dict(id=f"m{k}", x=float(x[k]), y=float(y[k]), yaw=float(h[k]) + 0.05 * (k - 1),
                 vx=20.0 + 5.0 * k, vy=0.3 * (k - 1), yaw_rate=0.1 * (k - 1), prev_steer=0.1 * (k - 1),
                 prev_throttle_brake=0.5 - 0.3 * k, steer_angle=0.02 * (k - 1), ax=1.0 - k, ay=2.0 * (k - 1))
            for k in range(n)]


def runtime_actions(runtime, track, cars, skills=1.0):
    states = [{k: v for k, v in c.items() if k not in ("id", "skill")} for c in cars]
    return runtime.act(track, states, skill=skills, ids=[c["id"] for c in cars])


def act(client, track, cars, **extra):
    r = client.post("/act", json={"track": track, "cars": cars, **extra})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [a["id"] for a in body["actions"]] == [c["id"] for c in cars]
    return np.array([[a["steer"], a["throttle_brake"]] for a in body["actions"]])


def ellipse_centreline(a=220.0, b=130.0, n=90, w_left=6.0, w_right=7.0):
    th = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return [[float(a * np.cos(t)), float(b * np.sin(t)), w_left, w_right] for t in th]


# ---------------------------------------------------------------------------- fuzzing
# Property-based requests generated from the server's own OpenAPI schema with schemathesis:
# one hypothesis test per operation and generation mode. (schemathesis.pytest.from_fixture
# would be the usual entry point, but schemathesis 4.32 reads pytest's removed
# ``Item._nodeid`` there and fails under pytest 9; the strategies work with any pytest.)
OPERATIONS = [("GET", "/health"), ("GET", "/driver"), ("GET", "/tracks"), ("POST", "/tracks"),
              ("DELETE", "/tracks/{name}"), ("POST", "/act"), ("POST", "/reset")]
# negative cases only where there is input to break (a body)
FUZZ = [(m, p, "positive") for m, p in OPERATIONS] + [(m, p, "negative") for m, p in OPERATIONS if m == "POST"]
MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def fuzz_server(exported_builtin):
    """A server of its own: the fuzzer loads and unloads tracks."""
    with serve_in_thread(f"onnx:{exported_builtin}", token=TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json")


def _checks():
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance, negative_data_rejection, response_schema_conformance, status_code_conformance,
    )

    return [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
            negative_data_rejection]


def test_schema_lists_every_operation(api_schema):
    ops = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert ops == set(OPERATIONS)  # a new endpoint must be added to the fuzzing


@pytest.mark.parametrize("method, path, mode", FUZZ, ids=[f"{m} {p} {g}" for m, p, g in FUZZ])
def test_fuzz_openapi_schema(api_schema, method, path, mode):
    """Requests that fit the schema (positive) and that break it (negative): never a 5xx,
    every status and body as documented, invalid data rejected."""
    from hypothesis import given
    from schemathesis import GenerationMode

    operation = api_schema[path][method]
    checks = _checks()

    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(headers=AUTH, checks=checks)

    run()


def test_fuzz_act_on_known_tracks(api_schema):
    """Requests that fit the schema, made to name a known track with unique ids and each
    optional field for all cars or none, must all be answered: 200, actions in [-1, 1]
    (extreme but allowed values included)."""
    from hypothesis import given
    from schemathesis import GenerationMode

    from agents.runtime import OPTIONAL_FIELDS

    @given(case=api_schema["/act"]["POST"].as_strategy(generation_mode=GenerationMode.POSITIVE))
    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case):
        body = case.body
        body["track"] = ("club", "oval", "technical", "flowing")[len(body["cars"]) % 4]
        for k, car in enumerate(body["cars"]):
            car["id"] = f"f{k}"
        for field in OPTIONAL_FIELDS:
            if not all(car.get(field) is not None for car in body["cars"]):
                for car in body["cars"]:
                    car.pop(field, None)
        response = case.call_and_validate(headers=AUTH, checks=_checks())
        assert response.status_code == 200, response.text
        actions = response.json()["actions"]
        assert len(actions) == len(body["cars"])
        assert all(-1.0 <= a["steer"] <= 1.0 and -1.0 <= a["throttle_brake"] <= 1.0 for a in actions)

    run()


# ---------------------------------------------------------------------------- endpoints
def test_health_driver_and_tracks(server, client, runtime):
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}  # no token needed
    info = client.get("/driver").json()
    assert info["obs_dim"] == runtime.obs_dim and info["action_dim"] == 2
    assert info["control_hz"] == pytest.approx(runtime.control_hz)
    assert info["vehicle"]["name"] == runtime.vehicle.name
    assert info["vehicle"]["params"]["mass_kg"] == pytest.approx(runtime.vehicle.mass_kg)
    assert info["training"]["source_file"].endswith("builtin_driver.pt")
    assert info["project_version"] and info["exported_with_version"]
    assert set(info["required_fields"]) >= {"x", "y", "yaw", "vx", "vy", "yaw_rate", "prev_steer",
                                            "prev_throttle_brake"}
    assert info["max_cars"] == MAX_CARS
    tracks = {t["name"]: t for t in client.get("/tracks").json()["tracks"]}
    assert {"oval", "club", "technical", "flowing"} <= set(tracks)
    assert tracks["club"]["length_m"] == pytest.approx(load_track("club").length, abs=0.1)
    assert tracks["club"]["kind"] == "builtin"


def test_token(server):
    cars = example_cars("club", 1)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}):
        for method, path, body in (("GET", "/driver", None), ("GET", "/tracks", None),
                                   ("POST", "/act", {"track": "club", "cars": cars}), ("POST", "/reset", None)):
            r = httpx.request(method, f"{server}{path}", json=body, headers=headers)
            assert r.status_code == 401, (headers, path, r.text)
            assert "token" in r.json()["error"]
            assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server}/health").status_code == 200
    schema_doc = httpx.get(f"{server}/openapi.json").json()  # the schema is public, and says a token is needed
    assert schema_doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema_doc["paths"]["/act"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in schema_doc["paths"]["/health"]["get"]
    r = httpx.post(f"{server}/act", json={"track": "club", "cars": cars}, headers=AUTH)
    assert r.status_code == 200
    r = httpx.post(f"{server}/act", json={"track": "club", "cars": cars}, headers={"authorization": f"bearer {TOKEN}"})
    assert r.status_code == 200  # the scheme is case-insensitive


def test_act_equals_runtime(client, runtime):
    """The server's actions are the runtime's for the same input, in [-1, 1]."""
    track = load_track("club")
    cars = moving_cars("club", 4)
    got = act(client, "club", cars)
    want = runtime_actions(runtime, track, cars)
    assert got.shape == (4, 2)
    assert np.all(np.abs(got) <= 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # the required fields alone: the runtime derives the rest, the server too
    bare = [{k: v for k, v in c.items() if k not in ("steer_angle", "ax", "ay")} for c in cars]
    np.testing.assert_allclose(act(client, "club", bare), runtime_actions(runtime, track, bare), atol=1e-6)
    # a standing grid of 20 cars (the benchmark's request)
    grid = example_cars("club", 20)
    np.testing.assert_allclose(act(client, "club", grid), runtime_actions(runtime, track, grid), atol=1e-6)


def test_skill_per_car(client):
    """Skill is per car and has memory between requests: the full-skill car answers the same
    to the same state, the low-skill one (noise, reaction lag, speed cap) does not."""
    base = moving_cars("club", 1)[0]
    cars = [dict(base, id="sk-full"), dict(base, id="sk-low", skill=0.2)]
    runs = np.array([act(client, "club", cars, reset=(k == 0)) for k in range(6)])
    full, low = runs[:, 0], runs[:, 1]
    assert np.all(full == full[0])
    assert np.max(np.abs(low - full)) > 1e-3  # the low-skill car drives differently
    assert np.max(np.abs(np.diff(low, axis=0))) > 1e-4  # and its noise evolves over the calls
    assert np.all(np.abs(low) <= 1.0)
    r = client.post("/reset", json={"ids": ["sk-low"]})
    assert r.status_code == 200 and r.json() == {"reset": ["sk-low"]}
    assert client.post("/reset").json() == {"reset": "all"}
    # at skill 1 both cars are the unmodified driver again
    same = act(client, "club", [dict(base, id="sk-full"), dict(base, id="sk-low")])
    np.testing.assert_array_equal(same[0], same[1])


def test_uploaded_centreline_track(client, runtime):
    pts = ellipse_centreline()
    r = client.post("/tracks", json={"name": "ellipse", "centreline": pts})
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["name"] == "ellipse" and info["kind"] == "uploaded" and info["source"] == "uploaded"
    local = build_centreline_track("ellipse", pts)  # what the server built
    assert info["length_m"] == pytest.approx(local.length, abs=0.1)
    assert info["width_m"] == pytest.approx([13.0, 13.0], abs=0.01)
    assert "ellipse" in {t["name"] for t in client.get("/tracks").json()["tracks"]}
    s = np.array([10.0, 200.0])
    x, y, h = local.frenet_to_xy(s, np.array([1.0, -1.0]))
    cars = [dict(id=f"e{k}", x=float(x[k]), y=float(y[k]), yaw=float(h[k]), vx=25.0, vy=0.0, yaw_rate=0.0,
                 prev_steer=0.0, prev_throttle_brake=0.0) for k in range(2)]
    np.testing.assert_allclose(act(client, "ellipse", cars), runtime_actions(runtime, local, cars), atol=1e-6)
    act(client, "ellipse", [dict(c, skill=0.5) for c in cars])  # the reference lap on it works too
    # a built-in or generated circuit under a name; never a file of the server
    r = client.post("/tracks", json={"name": "gen3", "builtin": "random:3"})
    assert r.status_code == 201 and r.json()["kind"] == "generated"
    act(client, "gen3", example_cars(load_track("random:3"), 2))
    for spec in ("/etc/passwd", "../racing/data/tracks/example.csv", "example.csv", str(ROOT / "README.md")):
        r = client.post("/tracks", json={"name": "file", "builtin": spec})
        assert r.status_code == 422, r.text
    # unload
    assert client.delete("/tracks/ellipse").json() == {"deleted": "ellipse"}
    assert client.post("/act", json={"track": "ellipse", "cars": cars}).status_code == 404
    assert client.delete("/tracks/ellipse").status_code == 404
    assert client.delete("/tracks/club").status_code == 409


@pytest.mark.parametrize("change, words", [
    (lambda p: p[:9], "at least 10"),
    (lambda p: p + [p[0]], "repeats the first"),
    (lambda p: p[:5] + [p[4]] + p[5:], "repeats the previous"),
    (lambda p: p[::3], "apart"),  # up to 66 m apart
    (lambda p: [p[k] for k in (0, 2, 1)] + p[3:], "crosses itself"),
    (lambda p: [[x, y, 0.0, wr] for x, y, _, wr in p], "greater than 0"),
    (lambda p: [[x, y, wl] for x, y, wl, _ in p], "Field required"),
    (lambda p: [[x, y, wl, wr, 1.0] for x, y, wl, wr in p], "at most 4"),
    (lambda p: [[x, y, wl, wr] for x, y, wl, wr in p[:-1]] + [["1", 2.0, 3.0, 3.0]], "valid number"),
])
def test_bad_centreline_is_422(client, change, words):
    pts = ellipse_centreline(a=280.0, b=200.0, n=80)  # 16 to 22 m apart
    r = client.post("/tracks", json={"name": "bad", "centreline": change(pts)})
    assert r.status_code == 422, r.text
    assert words in r.json()["error"], r.json()


def test_track_names(client):
    pts = ellipse_centreline()
    r = client.post("/tracks", json={"name": "club", "centreline": pts})
    assert r.status_code == 409 and "built-in" in r.json()["error"]
    for bad in ("", "../x", "a b", "x" * 65, "ünï"):
        r = client.post("/tracks", json={"name": bad, "centreline": pts})
        assert r.status_code == 422, (bad, r.text)
    assert client.post("/tracks", json={"builtin": "club"}).status_code == 201  # already there: a no-op


def test_bad_requests_get_4xx_and_the_server_lives_on(server, client):
    good = moving_cars("club", 2)
    url = f"{server}/act"
    json_h = {**AUTH, "Content-Type": "application/json"}

    def post(body=None, *, content=None, headers=json_h, expect=422):
        r = httpx.post(url, content=content if content is not None else json.dumps(body), headers=headers)
        assert r.status_code == expect, (body if content is None else content[:80], r.status_code, r.text[:300])
        msg = r.json()["error"]
        assert isinstance(msg, str) and msg
        return msg

    assert "malformed JSON" in post(content=b'{"track": "club", "cars": [', expect=400)
    post(content=b"[" * 50_000 + b"]" * 50_000, expect=400)  # too deep for the parser
    assert "finite" in post({"track": "club", "cars": [dict(good[0], x=float("nan"))]})
    assert "finite" in post({"track": "club", "cars": [dict(good[0], vx=float("inf"))]})
    post(content=b'{"track": "club", "cars": [{"id": 1, "x": 1e999}]}')
    assert "unknown track" in post({"track": "nowhere", "cars": good}, expect=404)
    post({"track": "random:1", "cars": good}, expect=404)  # generated tracks are loaded first (POST /tracks)
    post({"track": "club", "cars": good[0]})  # not a list
    post({"track": "club", "cars": []})
    post({"track": "club", "cars": [dict(good[0], id=f"c{k}") for k in range(MAX_CARS + 1)]})
    post({"track": "club", "cars": [[1, 2, 3]]})
    post({"track": ["club"], "cars": good})
    post({"track": "club", "cars": good, "extra": 1})
    assert "foo" in post({"track": "club", "cars": [dict(good[0], foo=1.0)]})
    assert "yaw_rate" in post({"track": "club", "cars": [{k: v for k, v in good[0].items() if k != "yaw_rate"}]})
    assert "'ax'" in post({"track": "club", "cars": [good[0], {k: v for k, v in good[1].items() if k != "ax"}]})
    assert "more than once" in post({"track": "club", "cars": [good[0], dict(good[1], id=good[0]["id"])]})
    assert "skill" in post({"track": "club", "cars": [dict(good[0], skill=1.5)]})
    post({"track": "club", "cars": [dict(good[0], x="1.0")]})  # strings are not numbers
    post({"track": "club", "cars": [dict(good[0], vx=True)]})  # nor are booleans
    post({"track": "club", "cars": [dict(good[0], prev_steer=1.5)]})  # out of range
    post({"track": "club", "cars": [dict(good[0], id=None)]})
    post({"track": "club", "cars": good, "reset": "yes"})
    post(content=b"x" * (1024 * 1024 + 1), expect=413)
    assert "Content-Type" in post(content=json.dumps({"track": "club", "cars": good}).encode(), headers=AUTH,
                                  expect=415)
    assert httpx.get(f"{server}/nope", headers=AUTH).status_code == 404
    assert httpx.get(url, headers=AUTH).status_code == 405
    # a chunked upload (no Content-Length) over the limit is cut off as well
    r = httpx.post(url, content=iter([b"x" * 65536] * 20), headers=json_h)
    assert r.status_code == 413
    # still serving
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    assert act(client, "club", good).shape == (2, 2)


def test_small_body_limit_and_no_token(exported_builtin, runtime):
    app = create_app(runtime, max_body_bytes=2000)
    with serve_in_thread(app) as url:
        cars = example_cars("club", 2)
        assert httpx.post(f"{url}/act", json={"track": "club", "cars": cars}).status_code == 200  # no token needed
        r = httpx.post(f"{url}/act", json={"track": "club", "cars": example_cars("club", 20)})
        assert r.status_code == 413 and "2000" in r.json()["error"]
        assert "securitySchemes" not in httpx.get(f"{url}/openapi.json").json().get("components", {})
    with pytest.raises(httpx.ConnectError):  # shut down on exit
        httpx.get(f"{url}/health", timeout=2.0)


def test_track_capacity(runtime, monkeypatch):
    import agents.serve

    monkeypatch.setattr(agents.serve, "MAX_LOADED_TRACKS", 1)
    with serve_in_thread(create_app(runtime)) as url:
        assert httpx.post(f"{url}/tracks", json={"name": "one", "builtin": "oval"}).status_code == 201
        assert httpx.post(f"{url}/tracks", json={"name": "one", "builtin": "club"}).status_code == 201  # replaces
        r = httpx.post(f"{url}/tracks", json={"name": "two", "builtin": "oval"})
        assert r.status_code == 409 and "DELETE" in r.json()["error"]
        assert httpx.delete(f"{url}/tracks/one").status_code == 200
        assert httpx.post(f"{url}/tracks", json={"name": "two", "builtin": "oval"}).status_code == 201


def test_concurrent_clients(client, runtime):
    """Several games at once: every answer is the one a lone request gets."""
    from concurrent.futures import ThreadPoolExecutor

    track = load_track("club")
    races = [[dict(c, id=f"g{g}-{c['id']}") for c in moving_cars("club", 2 + g)] for g in range(4)]
    want = [runtime_actions(runtime, track, cars) for cars in races]

    def game(g):
        with httpx.Client(base_url=str(client.base_url), headers=AUTH) as c:
            return [act(c, "club", races[g]) for _ in range(8)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(game, range(4)))
    for g, runs in enumerate(results):
        for got in runs:
            np.testing.assert_allclose(got, want[g], atol=1e-6)


def test_load_driver_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_driver(f"onnx:{tmp_path / 'missing.onnx'}")
    with pytest.raises(ConfigError, match="skill per car"):
        load_driver("onnx:driver.onnx@0.5")
    with pytest.raises(ConfigError, match="scripted"):
        load_driver("scripted:pro")
    with pytest.raises(ConfigError):
        create_app(f"onnx:{tmp_path / 'missing.onnx'}")
    with pytest.raises(ConfigError, match="token"):
        create_app(None, token="has space")


def test_cli_errors(capsys, tmp_path):
    from racing import cli

    assert "agents.serve" in cli.COMMAND_MODULES, "register agents.serve in racing/cli.py COMMAND_MODULES"
    assert cli.main(["serve", "--driver", f"onnx:{tmp_path / 'nope.onnx'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("racing serve: error:") and "\n" not in err


def _listen_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (Linux /proc)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, _, p = local.partition(":")
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                if len(addr) == 8:
                    out.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
                else:
                    out.add(addr)
    return out


def test_cli_serve_subprocess(exported_builtin):
    """The real command: binds to 127.0.0.1 only, needs the token, answers /act."""
    racing_exe = Path(sys.executable).with_name("racing")
    if not racing_exe.exists():
        pytest.skip("the racing console script is not installed next to this Python")
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RACING_SERVE_TOKEN", None)
    proc = subprocess.Popen([str(racing_exe), "serve", "--driver", f"onnx:{exported_builtin}", "--port", str(port),
                             "--token", TOKEN], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60.0
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "racing serve did not answer /health within 60 s"
            time.sleep(0.2)
        if Path("/proc/net/tcp").exists():
            assert _listen_addresses(port) == {"127.0.0.1"}
        cars = example_cars("club", 2)
        assert httpx.post(f"{url}/act", json={"track": "club", "cars": cars}).status_code == 401
        r = httpx.post(f"{url}/act", json={"track": "club", "cars": cars}, headers=AUTH)
        assert r.status_code == 200 and len(r.json()["actions"]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out = proc.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
    assert f"listening on http://127.0.0.1:{port}" in out
    assert "curl" in out and "/act" in out
    assert TOKEN not in out  # the secret is never printed


# ---------------------------------------------------------------------------- the example client
def _game_client():
    spec = importlib.util.spec_from_file_location("game_client", ROOT / "examples" / "game_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_game_client_short(server, capsys):
    gc = _game_client()
    assert gc.main(["--url", server, "--token", TOKEN, "--track", "club", "--skills", "1.0,0.7,0.4",
                    "--max-steps", "30"]) == 0
    out = capsys.readouterr().out
    assert "3 cars" in out and "30 control steps" in out and "p99" in out
    driven = [float(m) for m in re.findall(r"(\d+) m driven", out)]
    assert len(driven) == 3 and all(d > 10.0 for d in driven)  # every car pulled away from the grid
    assert gc.main(["--url", server, "--token", "wrong", "--max-steps", "3"]) == 1
    assert "401" in capsys.readouterr().err


def test_game_client_uploads_a_csv_track(server, capsys):
    from racing.trackio import EXAMPLE_CSV

    gc = _game_client()
    assert gc.main(["--url", server, "--token", TOKEN, "--track", str(EXAMPLE_CSV), "--skills", "0.8",
                    "--max-steps", "20", "--required-only"]) == 0
    assert "20 control steps" in capsys.readouterr().out


@pytest.mark.slow
def test_game_client_laps(exported_builtin, capsys):
    """Full laps through the server (a server of its own: the skill noise is seeded per server)."""
    gc = _game_client()
    with serve_in_thread(f"onnx:{exported_builtin}") as url:
        assert gc.main(["--url", url, "--track", "club", "--skills", "1.0,0.7,0.4", "--laps", "2",
                        "--max-steps", "3000"]) == 0
    out = capsys.readouterr().out
    laps = re.findall(r"(car\d) \(skill [\d.]+\)  lap (\d): +([\d.]+) s  (valid|INVALID)", out)
    full = [float(t) for car, _, t, _ in laps if car == "car1"]
    assert len(full) >= 2, out  # the unmodified driver laps the circuit
    ref = load_track("club").length / 80.0  # no faster than at top speed all the way
    assert all(ref < t < 120.0 for t in full), out
    assert out.count("m driven") == 3

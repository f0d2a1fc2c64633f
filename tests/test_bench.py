"""``racing bench``: the measuring machinery and the JSON report (figures are never asserted
against speed targets: benchmarks are not tests)."""

import json
import math

import pytest

from agents import bench
from racing.cli import main


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_time_rate_counts_calls():
    calls = []
    rates = bench.time_rate(lambda: calls.append(1), 5, budget_s=0.01, repeats=3, warmup_s=0.0)
    assert len(rates) == 3 and all(positive(r) for r in rates)
    # 2 warm-up calls, then each repeat makes at least one call
    assert len(calls) >= 2 + 3


def test_measure_sim_reports_control_and_physics_steps():
    control, physics = bench.measure_sim(4, 2, budget_s=0.05, repeats=2)
    assert positive(control["per_s"]) and len(control["repeats_per_s"]) == 2
    assert control["error"] is None
    assert "control" in control["unit"] and "physics" in physics["unit"]
    assert physics["substeps"] == 10
    assert physics["per_s"] == pytest.approx(10 * control["per_s"])
    assert control["num_races"] == 4 and control["cars_per_race"] == 2
    # the scripted drivers keep the cars off the walls
    assert control["wall_contact_fraction"] < 0.05


def test_targets_and_table_with_missing_figures():
    def res(per_s, error=None):
        return bench._result("x", "u", [per_s] if per_s else None, error=error)

    results = {
        "sim_256x1_control": res(2e5), "sim_256x1_physics": res(2e6),
        "sim_16x16_control": res(1e5), "sim_16x16_physics": res(1e6),
        "single_env": res(3e4), "vector_env_256": res(None, "NameNotFound: no env"),
        "pendulum": res(4e4), "car_racing": res(None, "DependencyNotInstalled: box2d"),
    }
    targets = {t["name"]: t for t in bench._targets(results)}
    t = targets["single env / Pendulum-v1"]
    assert t["ratio"] == pytest.approx(0.75) and t["met"] is True
    assert targets["sim 256x1 physics car steps / 1e6 per core"]["met"] is True
    assert targets["sim 16x16 physics car steps / 1e6 per core"]["met"] is False  # strictly above 1e6
    assert targets["sim 256x1 control car steps / 1e6 per core"]["met"] is False
    assert targets["vector env (256, obs) car steps / Pendulum-v1"]["met"] is None
    assert targets["single env / CarRacing-v3"]["ratio"] is None
    report = {"machine": {"cpu": "cpu", "cores": 2}, "settings": {"repeats": 1, "budget_s": 0.1},
              "results": results, "targets": list(targets.values())}
    table = bench.format_table(report)
    assert "DependencyNotInstalled: box2d" in table and "NO" in table and "yes" in table
    # the server's latency target is an upper bound
    results["server_20"] = bench._result("s", "requests", [500.0], p50_ms=1.0, p99_ms=6.0, max_ms=9.0)
    results["runtime_20"] = res(5e4)
    targets = {t["name"]: t for t in bench._targets(results)}
    assert targets["server p99 latency, 20 cars / 5 ms"]["met"] is False
    assert targets["runtime decisions, batch 20 / 20,000 per core"]["met"] is True
    assert "<= 1" in bench.format_table(dict(report, results=results, targets=list(targets.values())))


def test_bench_cli_json_to_stdout(capsys):
    assert main(["bench", "--quick", "--json", "-", "--budget-s", "0.02", "--repeats", "1"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)  # stdout holds nothing but the JSON
    assert "measurement" in out.err  # the table goes to stderr
    m = report["machine"]
    for key in ("cpu", "cores", "python", "numpy", "numba", "date"):
        assert m[key]
    r = report["results"]
    assert set(r) == {"sim_256x1_control", "sim_256x1_physics", "sim_16x16_control", "sim_16x16_physics",
                      "single_env", "vector_env_256", "pendulum", "car_racing", "runtime_1", "runtime_20",
                      "runtime_256", "server_20"}
    for key in ("runtime_1", "runtime_20", "runtime_256", "server_20"):
        assert positive(r[key]["per_s"]), r[key]["error"]
    server = r["server_20"]
    assert 0 < server["p50_ms"] <= server["p99_ms"] <= server["max_ms"] and server["requests"] >= 50
    names = {t["name"]: t for t in report["targets"]}
    assert names["server p99 latency, 20 cars / 5 ms"]["at_most"] is True
    assert positive(names["runtime decisions, batch 256 / 20,000 per core"]["ratio"])
    for key in ("sim_256x1_control", "sim_256x1_physics", "sim_16x16_control", "sim_16x16_physics", "pendulum"):
        assert positive(r[key]["per_s"]), key
        assert r[key]["error"] is None
    for key in ("single_env", "vector_env_256"):
        assert positive(r[key]["per_s"]), r[key]["error"]
    # CarRacing needs box2d: a figure, or null with the reason
    assert positive(r["car_racing"]["per_s"]) or (r["car_racing"]["per_s"] is None and r["car_racing"]["error"])
    assert r["sim_256x1_physics"]["per_s"] == pytest.approx(10 * r["sim_256x1_control"]["per_s"])
    assert all(t["met"] in (True, False, None) for t in report["targets"])


def test_bench_cli_bad_arguments(tmp_path, capsys):
    assert main(["bench", "--json", str(tmp_path / "missing" / "b.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", "--budget-s", "0"]) == 2
    assert main(["bench", "--track", "no-such-track"]) == 2


def test_bench_cli_writes_json_file(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert main(["bench", "--json", str(path), "--budget-s", "0.01", "--repeats", "1", "--no-runtime"]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out and f"wrote {path}" in out
    report = json.loads(path.read_text())
    assert positive(report["results"]["sim_16x16_control"]["per_s"])
    assert report["settings"]["repeats"] == 1


def test_training_rates_window_and_table():
    from agents.bench_training import _rates, format_training_table

    samples = [(0.0, 0, 0), (1.0, 500, 0), (2.0, 1000, 60), (4.0, 2000, 180)]
    env, grad = _rates(samples, t_from=2.0)
    assert env == pytest.approx(500.0) and grad == pytest.approx(60.0)
    assert _rates(samples, t_from=10.0) == (None, None)
    report = {
        "throughput": [
            {"trainer": "racing train (quickstart.yaml)", "workers": 1, "env_steps_per_s": 600.0, "grad_steps_per_s": 75.0},
            {"trainer": "SB3 SAC.learn()", "env_steps_per_s": 150.0, "grad_steps_per_s": 19.0},
        ],
        "first_clean_lap": [
            {"trainer": "racing train (quickstart.yaml)", "first_clean_lap_s": 150.0, "cap_s": 600.0},
            {"trainer": "SB3 SAC.learn() (default settings)", "first_clean_lap_s": None, "cap_s": 600.0},
        ],
        "first_clean_lap_speedup": ">= 4.0",
    }
    table = format_training_table(report)
    assert "none within 600 s" in table and ">= 4.0" in table and "600.0" in table


@pytest.mark.slow
def test_training_throughput_runs_both_trainers():
    from agents.bench_training import ours, plain_sac

    a = ours(0, window_s=2.0)
    b = plain_sac(window_s=2.0)
    assert a["env_steps_per_s"] > 0 and a["grad_steps_per_s"] > 0
    assert b["env_steps_per_s"] > 0 and b["grad_steps_per_s"] > 0

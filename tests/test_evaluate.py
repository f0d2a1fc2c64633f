"""racing eval: JSON contents, batched races, drivers that never finish, bad input."""

import json

import numpy as np
import pytest

from agents import drivers
from agents.evaluate import evaluate
from racing.cli import main
from racing.errors import ConfigError

KEYS = {"track", "driver", "reference_lap_s", "laps", "completed_laps", "best_lap_s", "mean_lap_s",
        "gap_to_reference_pct", "off_track_s", "wall_contacts", "collisions", "penalties", "seed"}


class Parked:
    """A driver that never moves (never completes a lap)."""

    name = "parked"

    def reset(self, sim, cars, seed):
        pass

    def act(self, sim, cars):
        return np.zeros((len(cars), 2))


@pytest.fixture
def parked_driver():
    drivers.register("parked", "parked (tests)")(lambda arg: Parked())
    yield "parked"
    drivers._PREFIXES.pop("parked")


def test_time_trial_json(capsys):
    assert main(["eval", "--driver", "scripted:alien", "--track", "oval", "--laps", "2", "--json", "-",
                 "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert KEYS <= set(res)
    assert res["completed_laps"] == 2 and all(lap["valid"] for lap in res["laps"])
    assert all(len(lap["sectors_s"]) == 3 for lap in res["laps"])
    assert 0.0 < res["gap_to_reference_pct"] < 3.0  # alien drives within 3% of the limit
    assert res["collisions"] == {"total": 0, "at_fault": 0}


def test_many_races_share_one_batch():
    res, _ = evaluate("scripted:pro", "oval", laps=1, races=3, progress=False)
    assert res["races"] == 3 and len(res["per_race"]) == 3
    assert res["aggregate"]["races_with_valid_lap"] == 3


def test_race_against_opponents_reports_positions():
    res, _ = evaluate("scripted:alien", "oval", laps=1, opponents=2, opponent_skill="rookie", progress=False)
    assert res["field"] == 3 and 1 <= res["finish_position"] <= 3
    assert {"total", "at_fault"} == set(res["collisions"])


def test_driver_that_never_laps_gets_null_figures(parked_driver):
    res, _ = evaluate(parked_driver, "oval", laps=1, progress=False)
    assert res["completed_laps"] == 0
    assert res["best_lap_s"] is None and res["mean_lap_s"] is None and res["gap_to_reference_pct"] is None


def test_plot_and_summary(tmp_path, capsys):
    png = tmp_path / "eval.png"
    assert main(["eval", "--driver", "scripted:alien", "--track", "oval", "--laps", "1", "--plot", str(png),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "reference lap" in out and "best valid lap" in out
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("args, message", [
    (["--driver", "wizard", "--track", "oval"], "unknown driver 'wizard'"),
    (["--driver", "scripted:godlike", "--track", "oval"], "skill"),
    (["--driver", "scripted:pro", "--track", "nowhere"], "nowhere"),
    (["--driver", "scripted:pro", "--track", "oval", "--laps", "0"], "--laps must be >= 1"),
    (["--driver", "scripted:pro", "--track", "oval", "--json", "/no/such/dir/out.json"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(["eval", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_spec_raises_config_error():
    with pytest.raises(ConfigError, match="driver spec is required"):
        drivers.make_driver("")


def test_builtin_driver_laps_the_oval_cleanly():
    """The shipped driver (agents/data/builtin_driver.pt) works out of the box."""
    res, _ = evaluate("builtin", "oval", laps=1, progress=False)
    assert res["completed_laps"] == 1 and res["laps"][0]["valid"]
    assert res["gap_to_reference_pct"] < 15.0 and res["wall_contacts"] == 0


def test_builtin_driver_takes_no_argument():
    with pytest.raises(ConfigError, match="takes no argument"):
        drivers.make_driver("builtin:fast")

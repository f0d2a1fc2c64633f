"""Training configs: validation names the key and the allowed values; shipped configs load."""

from pathlib import Path

import pytest

from agents.config import TrainConfig, dump_config, from_dict, load_config, to_dict
from racing.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["quickstart", "time_trial", "race", "generalist"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.total_steps > 0
    assert sum(cfg.races_per_scenario()) == cfg.workers.races_per_worker


def test_defaults_round_trip(tmp_path):
    cfg = TrainConfig()
    path = tmp_path / "c.yaml"
    dump_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert to_dict(again) == to_dict(cfg)


@pytest.mark.parametrize("data, words", [
    ({"algo": {}}, ["algo", "unknown key", "algorithm", "workers"]),
    ({"algorithm": {"lr": 1e-3}}, ["algorithm.lr", "unknown key", "learning_rate"]),
    ({"algorithm": {"name": "ppo"}}, ["algorithm.name", "'ppo'", "sac, tqc"]),
    ({"algorithm": {"gamma": 1.5}}, ["algorithm.gamma", "(0.0, 1.0]", "1.5"]),
    ({"algorithm": {"net_arch": [256, 0]}}, ["algorithm.net_arch[1]", "[1, 8192]"]),
    ({"algorithm": {"net_arch": 256}}, ["algorithm.net_arch", "list"]),
    ({"algorithm": {"ent_coef": "automatic"}}, ["algorithm.ent_coef", "'auto' or a number"]),
    ({"algorithm": {"name": "tqc", "n_quantiles": 2, "top_quantiles_to_drop_per_net": 2}},
     ["top_quantiles_to_drop_per_net", "n_quantiles"]),
    ({"workers": {"count": -1}}, ["workers.count", "[0, 1024]"]),
    ({"workers": {"count": 1.5}}, ["workers.count", "integer"]),
    ({"workers": {"races_per_worker": "many"}}, ["workers.races_per_worker", "integer"]),
    ({"tracks": [{"track": "club", "weight": 0}]}, ["tracks[0].weight", "> 0"]),
    ({"tracks": [{"name": "club"}]}, ["tracks[0].name", "unknown key", "track, weight"]),
    ({"tracks": "club"}, ["tracks", "list"]),
    ({"scenarios": [{"kind": "drift"}]}, ["scenarios[0].kind", "time_trial, race"]),
    ({"scenarios": [{"kind": "race", "opponents": 4}]}, ["scenarios[0]", "opponents", "1, 2, 3, 7"]),
    ({"scenarios": [{"kind": "time_trial", "opponents": 2}]}, ["scenarios[0]", "opponents", "race"]),
    ({"scenarios": [{"kind": "time_trial", "start": "flying"}]}, ["scenarios[0]", "start", "random, grid"]),
    ({"scenarios": [{"kind": "race", "opponents": 1, "start": "random"}]},
     ["scenarios[0]", "start", "grid, rolling, mid_race"]),
    ({"scenarios": [{"kind": "race", "opponents": 1, "opponent_skill": "legend"}]},
     ["scenarios[0].opponent_skill", "rookie", "(0, 1]"]),
    ({"scenarios": [{"weight": 1}]}, ["scenarios[0]", "missing", "kind"]),
    ({"rewards": {"speed": 1.0}}, ["rewards", "speed", "progress"]),
    ({"rewards": {"progress": -1}}, ["rewards", "progress", ">= 0"]),
    ({"observation": {"points": 10}}, ["observation", "points", "course_points"]),
    ({"checkpoint": {"keep_last": 0}}, ["checkpoint.keep_last", "[1, 1000]"]),
    ({"checkpoint": {"replay_buffer": "yes"}}, ["checkpoint.replay_buffer", "true or false"]),
    ({"evaluation": {"tracks": []}}, ["evaluation.tracks", "non-empty list"]),
    ({"total_steps": 0}, ["total_steps", ">= 1"]),
    ({"workers": {"races_per_worker": 1}, "scenarios": [{"kind": "time_trial"}, {"kind": "time_trial"}]},
     ["races_per_worker", "number of scenarios"]),
])
def test_bad_values_are_rejected_with_the_key_and_allowed_values(data, words):
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, data)
    msg = str(info.value)
    for w in words:
        assert w in msg, (w, msg)


def test_scenario_start_defaults_per_kind():
    cfg = from_dict(TrainConfig, {"scenarios": [{"kind": "time_trial"}, {"kind": "race", "opponents": 3}]})
    assert [s.start for s in cfg.scenarios] == ["random", "grid"]
    assert [s.cars_per_race for s in cfg.scenarios] == [1, 4]


def test_load_config_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("algorithm: {name: ppo}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: algorithm\.name"):
        load_config(p)
    p.write_text("algorithm: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_floats_for_integers_and_defaults_fill_in():
    cfg = from_dict(TrainConfig, {"total_steps": 3e5, "algorithm": {"buffer_size": 1e5}})
    assert cfg.total_steps == 300000 and isinstance(cfg.total_steps, int)
    assert cfg.algorithm.buffer_size == 100000
    assert cfg.rewards["progress"] == 1.0  # envs' RewardWeights defaults (GT Sophy)


def test_scenario_and_track_split():
    cfg = from_dict(TrainConfig, {
        "workers": {"races_per_worker": 10},
        "scenarios": [{"kind": "time_trial", "weight": 3}, {"kind": "time_trial", "start": "grid", "weight": 1}]})
    assert cfg.races_per_scenario() == [8, 2]  # 7.5 / 2.5: the largest remainder breaks the tie
    assert sum(cfg.races_per_scenario()) == 10
    few = from_dict(TrainConfig, {
        "workers": {"races_per_worker": 2},
        "scenarios": [{"kind": "time_trial", "weight": 100}, {"kind": "time_trial", "weight": 1}]})
    assert few.races_per_scenario() == [1, 1]  # every scenario gets a race


def test_overrides_are_validated():
    cfg = TrainConfig()
    assert cfg.with_overrides(**{"workers.count": 0}).workers.count == 0
    assert cfg.with_overrides(total_steps=123).total_steps == 123
    with pytest.raises(ConfigError, match="workers.count"):
        cfg.with_overrides(**{"workers.count": -2})

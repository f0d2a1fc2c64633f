"""Training configuration: frozen dataclasses validated at construction, read from YAML.

A config file has these sections (every key optional; defaults below)::

    seed: 0
    total_steps: 300000          # environment steps summed over all cars, workers, races
    vehicle: gt3                 # preset name or vehicle YAML
    tracks:                      # a mix of tracks, each drawn with probability ~ weight
      - {track: club, weight: 1}     # built-in name, random:SEED, a CSV path, or `random`
                                     # (a new procedural circuit at every episode)
    scenarios:                   # a mix of scenarios, races split between them by weight
      - {kind: time_trial, weight: 1, start: rolling, episode_s: 60}
      - {kind: race, weight: 1, opponents: 3, opponent_skill: pro, start: grid}
    rewards: {progress: 1.0, off_course: 0.01, ...}   # envs.rewards.RewardWeights
    observation: {course_points: 20, ...}              # envs.observation.ObsConfig
    algorithm: {name: sac, net_arch: [256, 256], n_steps: 3, updates_per_step: 0.125, ...}
    workers: {count: 1, races_per_worker: 16, rollout_steps: 32, sync_interval: 50}
    checkpoint: {every_steps: 100000, keep_last: 3, replay_buffer: false}
    evaluation: {every_steps: 100000, tracks: [club], laps: 2, ...}

Every section is a dataclass below; each field's metadata holds its allowed values, so an
unknown key or a bad value raises :class:`racing.errors.ConfigError` naming the key (as a
dotted path, e.g. ``algorithm.name``) and what is allowed -- before anything starts.

This module needs only numpy/pyyaml (and ``envs`` for the reward and observation
sections), never torch or ray.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from racing.errors import ConfigError

#: Opponent counts of the race scenarios (GT Sophy trained with 1, 2, 3 or 7 nearby
#: opponents, Wurman et al. 2022).
RACE_OPPONENTS = (1, 2, 3, 7)
SCENARIO_KINDS = ("time_trial", "race")
#: Start modes of each scenario kind (``envs.core.START_MODES``, ``envs.race.START_MODES``).
START_MODES = {"time_trial": ("random", "grid"), "race": ("grid", "rolling", "mid_race")}
OPPONENT_SKILLS = ("rookie", "amateur", "pro", "alien")
ALGORITHMS = ("sac", "tqc")
ACTIVATIONS = ("relu", "tanh", "elu")


# ====================================================================== field helpers
def _f(default: Any = dataclasses.MISSING, *, kind: str, lo=None, hi=None, lo_open=False, choices=None,
       doc: str = "", factory=None):
    """A dataclass field with validation metadata.

    ``kind``: ``int``, ``float``, ``str``, ``bool``, ``optional_int``, ``int_list``,
    ``str_list``, ``float_or_auto``, ``skill`` (a named skill or a number in (0, 1]),
    ``start`` (checked against the scenario kind), ``reward_weights`` / ``observation``
    (mappings validated by the envs' own classes), or ``section`` / ``section_list``
    (nested dataclasses; ``factory`` builds the default). ``doc`` documents the field.
    """
    meta = dict(kind=kind, lo=lo, hi=hi, lo_open=lo_open, choices=choices, doc=doc)
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _range_text(meta) -> str:
    lo, hi = meta["lo"], meta["hi"]
    if lo is not None and hi is not None:
        return f"in {'(' if meta['lo_open'] else '['}{lo}, {hi}]"
    if lo is not None:
        return f"{'>' if meta['lo_open'] else '>='} {lo}"
    if hi is not None:
        return f"<= {hi}"
    return "any value"


def _check_number(path: str, value, meta, integer: bool):
    what = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{path}: must be {what} {_range_text(meta)}, got {value!r}")
    if integer:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # YAML reads 3e5 as a float
        if not isinstance(value, numbers.Integral):
            raise ConfigError(f"{path}: must be an integer {_range_text(meta)}, got {value!r}")
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number {_range_text(meta)}, got {value!r}")
    lo, hi = meta["lo"], meta["hi"]
    if lo is not None and (value < lo or (meta["lo_open"] and value == lo)):
        raise ConfigError(f"{path}: must be {_range_text(meta)}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{path}: must be {_range_text(meta)}, got {value!r}")
    return value


def _check_choice(path: str, value, meta):
    if value not in meta["choices"]:
        raise ConfigError(f"{path}: {value!r} is not allowed; choose one of: {', '.join(map(str, meta['choices']))}")
    return value


def _coerce(path: str, value, f: dataclasses.Field):
    meta = f.metadata
    kind = meta["kind"]
    if kind == "int":
        v = _check_number(path, value, meta, integer=True)
    elif kind == "float":
        v = _check_number(path, value, meta, integer=False)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: must be true or false, got {value!r}")
        v = value
    elif kind == "start":  # checked against the scenario kind in ScenarioConfig
        if not isinstance(value, str):
            raise ConfigError(f"{path}: must be a string, got {value!r}")
        v = value.strip()
    elif kind == "str":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: must be a non-empty string, got {value!r}")
        v = value.strip()
    elif kind == "optional_int":
        v = None if value is None else _check_number(path, value, meta, integer=True)
    elif kind == "float_or_auto":
        if isinstance(value, str):
            if value != "auto":
                raise ConfigError(f"{path}: must be 'auto' or a number {_range_text(meta)}, got {value!r}")
            v = value
        else:
            v = _check_number(path, value, meta, integer=False)
    elif kind == "skill":
        if isinstance(value, str) and value in OPPONENT_SKILLS:
            v = value
        elif isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 < float(value) <= 1.0:
            v = float(value)
        else:
            raise ConfigError(f"{path}: must be one of {', '.join(OPPONENT_SKILLS)} or a number in (0, 1], "
                              f"got {value!r}")
    elif kind in ("int_list", "str_list"):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{path}: must be a non-empty list, got {value!r}")
        sub = dict(meta, kind=kind[:-5])
        fake = dataclasses.field(metadata=sub)
        v = tuple(_coerce(f"{path}[{i}]", x, fake) for i, x in enumerate(value))
    elif kind in ("reward_weights", "observation"):
        # validated by envs' own classes in TrainConfig.__post_init__
        if value is None:
            v = {}
        elif not isinstance(value, dict):
            raise ConfigError(f"{path}: must be a mapping of keys to values, got {value!r}")
        else:
            v = dict(value)
    elif kind == "section":
        v = from_dict(f.default_factory().__class__, value, path)
    elif kind == "section_list":
        cls = meta["choices"]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{path}: must be a non-empty list of mappings, got {value!r}")
        v = tuple(from_dict(cls, x, f"{path}[{i}]") for i, x in enumerate(value))
    else:  # pragma: no cover - a programming error in this module
        raise AssertionError(kind)
    if meta["choices"] is not None and kind in ("int", "float", "str"):
        _check_choice(path, v, meta)
    if meta["choices"] is not None and kind in ("int_list", "str_list"):
        for i, x in enumerate(v):
            _check_choice(f"{path}[{i}]", x, meta)
    return v


def from_dict(cls, data, path: str = ""):
    """Build the dataclass ``cls`` from a mapping, validating every key and value.

    Raises :class:`ConfigError` naming the dotted key path and the allowed keys/values.
    """
    label = path or "config"
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: must be a mapping of keys to values, got {type(data).__name__} {data!r}")
    allowed = [f.name for f in fields(cls)]
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{path + '.' if path else ''}{key}: unknown key; allowed keys here: {', '.join(allowed)}")
    kwargs = {}
    for f in fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(f"{path + '.' if path else ''}{f.name}", data[f.name], f)
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a rule across keys (__post_init__)
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
    except TypeError as exc:  # a required key is missing
        missing = [f.name for f in fields(cls) if f.name not in kwargs
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        raise ConfigError(f"{label}: missing required key(s) {', '.join(missing)}") from exc


def to_dict(obj) -> dict:
    """The plain-data (YAML-ready) form of a config dataclass."""
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = [to_dict(x) if dataclasses.is_dataclass(x) else x for x in v]
        elif isinstance(v, dict):
            v = dict(v)
        out[f.name] = v
    return out


# ====================================================================== sections
@dataclass(frozen=True)
class TrackChoice:
    """One entry of the track mix."""

    track: str = _f(kind="str", doc="built-in name, random:SEED, CSV path, or `random` (a new procedural "
                                    "circuit per episode)")
    weight: float = _f(1.0, kind="float", lo=0.0, lo_open=True, doc="relative frequency")


@dataclass(frozen=True)
class ScenarioConfig:
    """One entry of the scenario mix: a kind of episode and its share of the races.

    ``time_trial``: the learner alone. ``race``: the learner among ``opponents`` (1, 2, 3
    or 7, as GT Sophy's scenarios) scripted cars of skill ``opponent_skill``.

    ``start`` of a time trial: ``random`` (default; anywhere on the lap, rolling at a safe
    speed) or ``grid`` (a standing start). Of a race: ``grid`` (default; a standing start,
    the learner on a random grid slot), ``rolling`` (the grid formation rolling somewhere
    on the lap) or ``mid_race`` (opponents scattered within 60 m around the learner,
    rolling: GT Sophy's mid-race starts). An episode ends truly after ``laps`` timed laps
    (``null``: never) or when the car is stuck, and is truncated after ``episode_s``.
    """

    kind: str = _f(kind="str", choices=SCENARIO_KINDS)
    weight: float = _f(1.0, kind="float", lo=0.0, lo_open=True, doc="share of the races of every worker")
    start: str = _f("", kind="start", doc="time_trial: random|grid; race: grid|rolling|mid_race")
    episode_s: float = _f(60.0, kind="float", lo=1.0, hi=3600.0, doc="[s] time limit (truncation)")
    laps: Any = _f(None, kind="optional_int", lo=1, hi=1000, doc="terminate after this many timed laps")
    opponents: int = _f(0, kind="int", lo=0, hi=19)
    opponent_skill: Any = _f("pro", kind="skill")

    def __post_init__(self):
        allowed = START_MODES[self.kind]
        start = self.start or allowed[0]
        if start not in allowed:
            raise ConfigError(f"start: {start!r} is not allowed for kind {self.kind}; choose one of: {', '.join(allowed)}")
        object.__setattr__(self, "start", start)
        if self.kind == "time_trial" and self.opponents:
            raise ConfigError(f"opponents: must be 0 for kind time_trial (use kind: race), got {self.opponents}")
        if self.kind == "race" and self.opponents not in RACE_OPPONENTS:
            raise ConfigError(f"opponents: must be one of {', '.join(map(str, RACE_OPPONENTS))} for kind race, "
                              f"got {self.opponents}")

    @property
    def cars_per_race(self) -> int:
        return 1 + self.opponents


@dataclass(frozen=True)
class AlgorithmConfig:
    """The learner: Stable-Baselines3 SAC or sb3-contrib TQC (a quantile critic, the public
    analogue of GT Sophy's QR-SAC) and how often it trains."""

    name: str = _f("sac", kind="str", choices=ALGORITHMS)
    net_arch: tuple = _f((256, 256), kind="int_list", lo=1, hi=8192, doc="hidden layer sizes (actor and critics)")
    activation: str = _f("relu", kind="str", choices=ACTIVATIONS)
    learning_rate: float = _f(3e-4, kind="float", lo=0.0, hi=1.0, lo_open=True)
    batch_size: int = _f(256, kind="int", lo=1, hi=1 << 16)
    buffer_size: int = _f(200_000, kind="int", lo=1000, hi=100_000_000, doc="transitions kept (all cars)")
    gamma: float = _f(0.99, kind="float", lo=0.0, hi=1.0, lo_open=True)
    tau: float = _f(0.005, kind="float", lo=0.0, hi=1.0, lo_open=True)
    n_steps: int = _f(3, kind="int", lo=1, hi=64, doc="n-step returns (GT Sophy: 5 then 7)")
    ent_coef: Any = _f("auto", kind="float_or_auto", lo=0.0, lo_open=True,
                       doc="'auto' (learned, SAC v2) or a fixed alpha (GT Sophy: 0.01)")
    target_entropy: Any = _f("auto", kind="float_or_auto", doc="'auto' = -action dimensions")
    learning_starts: int = _f(5000, kind="int", lo=0, doc="environment steps collected before training starts")
    updates_per_step: float = _f(0.125, kind="float", lo=0.0, hi=64.0, lo_open=True,
                                 doc="gradient steps per environment step (update-to-data ratio)")
    n_quantiles: int = _f(25, kind="int", lo=1, hi=256, doc="TQC only")
    n_critics: int = _f(2, kind="int", lo=1, hi=10)
    top_quantiles_to_drop_per_net: int = _f(2, kind="int", lo=0, hi=255, doc="TQC only")

    def __post_init__(self):
        if self.name == "tqc" and self.top_quantiles_to_drop_per_net >= self.n_quantiles:
            raise ConfigError(f"top_quantiles_to_drop_per_net ({self.top_quantiles_to_drop_per_net}) must be "
                              f"below n_quantiles ({self.n_quantiles})")


@dataclass(frozen=True)
class WorkersConfig:
    """Rollout workers: each steps ``races_per_worker`` races at once (split between the
    scenarios by weight) and returns ``rollout_steps`` steps of every learner car per batch."""

    count: int = _f(1, kind="int", lo=0, hi=1024, doc="0: one process, no Ray")
    races_per_worker: int = _f(16, kind="int", lo=1, hi=4096)
    rollout_steps: int = _f(32, kind="int", lo=1, hi=10_000, doc="control steps per car per batch")
    sync_interval: int = _f(50, kind="int", lo=1, doc="gradient steps between weight broadcasts")
    sim_threads: int = _f(1, kind="int", lo=1, hi=256, doc="numba threads per worker")


@dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = _f(100_000, kind="int", lo=1, doc="environment steps between checkpoints")
    keep_last: int = _f(3, kind="int", lo=1, hi=1000)
    replay_buffer: bool = _f(False, kind="bool", doc="store the replay buffer too (large)")


@dataclass(frozen=True)
class EvaluationConfig:
    """Periodic evaluation with ``racing eval``'s code path (:func:`agents.evaluate.evaluate`)."""

    every_steps: int = _f(100_000, kind="int", lo=0, doc="0 disables periodic evaluation")
    tracks: tuple = _f(kind="str_list", factory=lambda: ("club",))
    laps: int = _f(2, kind="int", lo=1, hi=100)
    races: int = _f(1, kind="int", lo=1, hi=256)
    opponents: int = _f(0, kind="int", lo=0, hi=19)
    opponent_skill: Any = _f("pro", kind="skill")
    seed: int = _f(0, kind="int", lo=0)


def _default_tracks():
    return (TrackChoice(track="club"),)


def _default_scenarios():
    return (ScenarioConfig(kind="time_trial"),)


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run (see the module docstring)."""

    seed: int = _f(0, kind="int", lo=0)
    total_steps: int = _f(300_000, kind="int", lo=1, doc="environment steps summed over all cars")
    log_every_steps: int = _f(10_000, kind="int", lo=1, doc="environment steps between metric rows")
    vehicle: str = _f("gt3", kind="str")
    tracks: tuple = _f(kind="section_list", choices=TrackChoice, factory=_default_tracks)
    scenarios: tuple = _f(kind="section_list", choices=ScenarioConfig, factory=_default_scenarios)
    rewards: dict = _f(kind="reward_weights", factory=dict)
    observation: dict = _f(kind="observation", factory=dict)
    algorithm: AlgorithmConfig = _f(kind="section", factory=AlgorithmConfig)
    workers: WorkersConfig = _f(kind="section", factory=WorkersConfig)
    checkpoint: CheckpointConfig = _f(kind="section", factory=CheckpointConfig)
    evaluation: EvaluationConfig = _f(kind="section", factory=EvaluationConfig)

    def __post_init__(self):
        # the envs-owned sections are validated by their own classes (errors name the key)
        from envs.observation import ObsConfig
        from envs.rewards import RewardWeights

        try:
            rw = RewardWeights.from_dict(dict(self.rewards) if isinstance(self.rewards, dict) else self.rewards)
        except ConfigError as exc:
            raise ConfigError(f"rewards: {exc}") from None
        try:
            oc = ObsConfig.from_dict(dict(self.observation) if isinstance(self.observation, dict) else self.observation)
        except ConfigError as exc:
            raise ConfigError(f"observation: {exc}") from None
        if isinstance(self.rewards, dict):
            object.__setattr__(self, "rewards", dataclasses.asdict(rw))
        if isinstance(self.observation, dict):
            object.__setattr__(self, "observation", dataclasses.asdict(oc))
        if self.workers.races_per_worker < len(self.scenarios):
            raise ConfigError(f"workers.races_per_worker ({self.workers.races_per_worker}) must be at least the "
                              f"number of scenarios ({len(self.scenarios)}): every scenario needs a race")

    # ---- derived values
    @property
    def reward_weights(self):
        from envs.rewards import RewardWeights

        return RewardWeights(**self.rewards)

    @property
    def obs_config(self):
        from envs.observation import ObsConfig

        return ObsConfig(**self.observation)

    def races_per_scenario(self) -> list[int]:
        """Races of each scenario in one worker: proportional to the weights (largest
        remainder), at least one each."""
        n = self.workers.races_per_worker
        w = [s.weight for s in self.scenarios]
        total = sum(w)
        exact = [n * x / total for x in w]
        counts = [max(1, int(math.floor(e))) for e in exact]
        while sum(counts) > n:
            k = max(range(len(counts)), key=lambda i: counts[i] - exact[i])
            counts[k] -= 1
        order = sorted(range(len(w)), key=lambda i: exact[i] - counts[i], reverse=True)
        i = 0
        while sum(counts) < n:
            counts[order[i % len(order)]] += 1
            i += 1
        return counts

    @property
    def cars_per_worker(self) -> int:
        """Learner cars per worker batch (the replay buffer's columns): one per race."""
        return self.workers.races_per_worker

    def with_overrides(self, **changes) -> "TrainConfig":
        """A copy with top-level fields or ``section.key`` entries replaced (validated)."""
        data = to_dict(self)
        for key, value in changes.items():
            if value is None:
                continue
            section, _, sub = key.partition(".")
            if sub:
                data.setdefault(section, {})[sub] = value
            else:
                data[section] = value
        return from_dict(TrainConfig, data)


def load_config(path) -> TrainConfig:
    """Read and validate a YAML config file; errors name the file and the key."""
    from racing.yamlio import read_yaml

    data = read_yaml(path, "config")
    try:
        return from_dict(TrainConfig, data or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def dump_config(cfg: TrainConfig, path) -> None:
    """Write the resolved config as YAML (every value, defaults included)."""
    import yaml

    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

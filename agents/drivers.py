"""Driver specs: a small registry that turns a string into something that drives cars.

A driver drives a set of cars of a :class:`racing.sim.RaceSim` in one call::

    driver = make_driver("scripted:pro")
    driver.reset(sim, cars, seed=0)
    controls = driver.act(sim, cars)   # (len(cars), 2) [steer, throttle_brake] in [-1, 1]

Spec forms: ``scripted:SKILL`` (a named skill ``rookie|amateur|pro|alien`` or a number in
(0, 1]); a path to a training run directory, a checkpoint or a ``driver.pt`` (also
``checkpoint:PATH``; :func:`agents.policy.load_driver`); ``builtin`` (the shipped trained
driver, :data:`BUILTIN_DRIVER`); ``onnx:PATH[@SKILL]`` (an exported driver run by the
torch-free :class:`agents.runtime.Driver`, optionally at a skill in [0, 1]). More kinds
register themselves with :func:`register`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from racing.errors import ConfigError


class Driver(Protocol):
    name: str

    def reset(self, sim, cars: np.ndarray, seed: int) -> None: ...

    def act(self, sim, cars: np.ndarray) -> np.ndarray: ...


_PREFIXES: dict[str, tuple[Callable[[str], Driver], str]] = {}


def register(prefix: str, help_text: str):
    """Register a factory for specs ``PREFIX:ARG`` (or bare ``PREFIX``)."""

    def deco(factory: Callable[[str], Driver]):
        _PREFIXES[prefix] = (factory, help_text)
        return factory

    return deco


def known_specs() -> list[str]:
    return [help_text for _, help_text in _PREFIXES.values()]


def make_driver(spec: str) -> Driver:
    """Build the driver named by ``spec`` (see the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"a driver spec is required; one of: {', '.join(known_specs())}")
    prefix, _, arg = spec.partition(":")
    if prefix in _PREFIXES:
        return _PREFIXES[prefix][0](arg)
    if os.path.exists(os.path.expanduser(spec)):  # a trained checkpoint, driver file or run directory
        from agents.policy import load_driver

        return load_driver(spec)
    raise ConfigError(f"unknown driver '{spec}'; use one of: {', '.join(known_specs())}")


class ScriptedSpecDriver:
    """``scripted:SKILL``: :class:`agents.scripted.ScriptedDriver` with race-craft."""

    def __init__(self, skill: str):
        from agents.scripted import resolve_skill

        try:
            value = float(skill)
        except ValueError:
            value = skill
        resolve_skill(value)  # a bad skill fails now, naming the allowed values
        self.skill = value
        self.name = f"scripted:{skill}"
        self._driver = None

    def reset(self, sim, cars, seed: int) -> None:
        from agents.scripted import ScriptedDriver

        self._driver = ScriptedDriver(self.skill, seed=int(seed))

    def act(self, sim, cars) -> np.ndarray:
        if self._driver is None:
            raise RuntimeError("call reset() before act()")
        return self._driver.act(sim, np.asarray(cars, dtype=np.int64))


@register("scripted", "scripted:SKILL (rookie, amateur, pro, alien, or a number in (0, 1])")
def _scripted(arg: str) -> Driver:
    return ScriptedSpecDriver(arg or "pro")


@register("checkpoint", "PATH or checkpoint:PATH (a training run directory, a checkpoint or a driver.pt)")
def _checkpoint(arg: str) -> Driver:
    from agents.policy import load_driver

    return load_driver(arg)


#: The shipped built-in driver: the actor of a run of ``configs/builtin.yaml`` (see README).
BUILTIN_DRIVER = Path(__file__).resolve().parent / "data" / "builtin_driver.pt"


@register("builtin", "builtin (the shipped trained driver)")
def _builtin(arg: str) -> Driver:
    from agents.policy import load_driver

    if arg:
        raise ConfigError(f"'builtin' takes no argument, got 'builtin:{arg}'")
    if not BUILTIN_DRIVER.is_file():
        raise ConfigError(f"the built-in driver file {BUILTIN_DRIVER} is missing from this installation")
    return load_driver(str(BUILTIN_DRIVER))


class OnnxSpecDriver:
    """``onnx:PATH[@SKILL]``: an exported driver (``racing export``) run by
    :class:`agents.runtime.Driver` on the simulator's state, at ``SKILL`` (default 1)."""

    def __init__(self, arg: str):
        from agents.runtime import Driver as RuntimeDriver, skill_settings

        path, sep, skill = arg.rpartition("@") if "@" in arg else (arg, "", "")
        if not path:
            raise ConfigError("onnx: give the exported file, e.g. onnx:driver.onnx or onnx:driver.onnx@0.5")
        try:
            self.skill = float(skill) if sep else 1.0
        except ValueError:
            raise ConfigError(f"onnx:{arg}: the skill after '@' must be a number in [0, 1]") from None
        skill_settings(self.skill)
        self.runtime = RuntimeDriver(path)
        self.name = f"onnx:{arg}"

    def reset(self, sim, cars, seed: int) -> None:
        self.runtime.seed = int(seed)
        self.runtime.reset()

    def act(self, sim, cars) -> np.ndarray:
        return self.runtime.act_sim(sim, cars, skill=self.skill).astype(np.float64)


@register("onnx", "onnx:PATH[@SKILL] (an exported driver.onnx, run without torch; skill in [0, 1], default 1)")
def _onnx(arg: str) -> Driver:
    return OnnxSpecDriver(arg)

"""Reward terms shared by every environment: a pure function of the simulator state and
the events of one control step, vectorised over cars.

Each term is a weighted physical quantity; penalties enter with a minus sign, so every
weight is >= 0. Defaults follow GT Sophy's published weights (Wurman et al., Nature 2022,
Maggiore settings; see REFERENCES.md):

=============  ======  ============================================================  ================
term           weight  quantity (per car, per control step)                          unit
=============  ======  ============================================================  ================
progress       1.0     signed course progress (race distance gained; 0 while the       m
                       car's centre is off the track at the end of the step)
off_course     0.01    ``-speed^2`` if the car is off the track at the end of the      (m/s)^2
                       step (charged once per control step)
wall           0.01    ``-integral of speed^2 dt`` over the wall-contact time of        m^2/s
                       the step (speed^2 x contact time)
tyre_slip      0.25    ``-w(v) * (excess_front + excess_rear)``: slip angle beyond      rad
                       each axle's peak (``max(0, |alpha| - alpha_peak)``), faded out
                       below walking pace by the model's kinematic blend ``w(v)``
                       (0 below ``blend_low_mps``, 1 above ``blend_high_mps``), where
                       slip angles mean nothing
collision      4.0     ``-1`` if the car touched another car during the step           -
rear_end       0.1     ``-closing_speed^2`` charged to the car *behind* in a rear-end   (m/s)^2
                       contact (see below); summed over its contacts of the step
=============  ======  ============================================================  ================

A contact between cars ``a`` and ``b`` with unit normal ``n`` (from ``a`` to ``b``) is a
rear-end by ``a`` when ``n`` lies within 45 degrees of both cars' headings
(``n . h_a > cos 45`` and ``n . h_b > cos 45``): ``a``'s nose meets ``b``'s tail while both
point the same way. Side-by-side contacts (normal across the cars) and head-on contacts
(headings opposed) are not rear-ends; they pay only the collision term. The headings are
those at the end of the control step.

``Race-v0`` adds two race terms computed in :mod:`envs.race`: ``passing`` (weight 0.5,
``+1`` per car passed and ``-1`` per car that passes, within the window from 20 m behind
to 40 m ahead) and ``unsporting`` (weight 2.0, GT Sophy used 0-5: ``-1`` per contact the
stewards blame on the car, :func:`racing.rules.classify_contact`).

The time trial reports the first four terms (:data:`SOLO_TERMS`); multi-car envs all six
(:data:`TERM_NAMES`). The env's reward is the sum of the reported terms, added in this
order, so ``sum(info["reward_terms"].values()) == reward`` holds exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numba as nb
import numpy as np

from racing.dynamics import (
    E_A, E_B, E_NX, E_NY, E_TYPE, E_VALUE, EV_CAR, F_ALPHAF, F_ALPHAR, F_PROGRESS_STEP, F_VX, F_VY,
    F_WALL_SPEED2_TIME, F_YAW, I_CAR_CONTACT, I_OFF, NUM_E, P_BF, P_BR, P_C, P_E, P_VHI, P_VLO,
)
from racing.errors import ConfigError

#: Names of all reward terms, in the order of the columns of :func:`compute_reward_terms`.
TERM_NAMES: tuple[str, ...] = ("progress", "off_course", "wall", "tyre_slip", "collision", "rear_end")
#: The terms a single-car environment reports.
SOLO_TERMS: tuple[str, ...] = TERM_NAMES[:4]
NUM_TERMS = len(TERM_NAMES)
#: cos(45 deg): the contact normal must lie this close to both headings for a rear-end.
REAR_END_COS = math.cos(math.radians(45.0))


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward terms (all >= 0; penalties are subtracted). Defaults: GT Sophy
    (Maggiore). See the module docstring for the quantity and unit of each term."""

    progress: float = 1.0  # per metre of course progress
    off_course: float = 0.01  # per (m/s)^2 per control step off the track
    wall: float = 0.01  # per m^2/s of speed^2 x wall-contact time
    tyre_slip: float = 0.25  # per rad of slip angle beyond the peak, per control step
    collision: float = 4.0  # per control step with car-to-car contact
    rear_end: float = 0.1  # per (m/s)^2 of closing speed, charged to the car behind
    passing: float = 0.5  # per place gained (lost) within 20 m behind to 40 m ahead (Race-v0)
    unsporting: float = 2.0  # per contact the stewards blame on the car (Race-v0; GT Sophy 0-5)

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise ConfigError(f"reward weight '{f.name}' must be a finite number, got {v!r}")
            if v < 0:
                raise ConfigError(f"reward weight '{f.name}' must be >= 0 (penalties are subtracted), got {v}")
            object.__setattr__(self, f.name, float(v))

    @classmethod
    def from_dict(cls, data) -> "RewardWeights":
        """Weights from a mapping (e.g. a YAML section); missing keys keep their defaults,
        an unknown key raises :class:`ConfigError` naming the allowed keys."""
        if data is None:
            return cls()
        if isinstance(data, RewardWeights):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"reward_weights must be a RewardWeights or a mapping of term -> weight, got {type(data).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in set(data) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown reward weight(s) {unknown}; allowed: {allowed}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path) -> "RewardWeights":
        """Weights from a YAML file holding a mapping term -> weight."""
        from racing.yamlio import read_yaml

        data = read_yaml(path, "reward weights")
        try:
            return cls.from_dict(data or {})
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_dict(self) -> dict:
        return asdict(self)

    def as_array(self) -> np.ndarray:
        """Weights in :data:`TERM_NAMES` order."""
        return np.array([getattr(self, n) for n in TERM_NAMES], dtype=np.float64)


def peak_slip_angles(P: np.ndarray) -> np.ndarray:
    """Slip angle [rad] at the peak of each axle's magic formula: ``(num_cars, 2)`` (front,
    rear) from the parameter rows ``P`` (``racing.sim.RaceSim.P``).

    The peak of ``sin(C atan(B a - E (B a - atan(B a))))`` is where the inner argument
    equals ``tan(pi / (2 C))``; it is solved for ``a`` by bisection (exact for ``E = 0``:
    ``a = tan(pi / (2 C)) / B``)."""
    P = np.atleast_2d(np.asarray(P, dtype=np.float64))
    c = P[:, P_C]
    e = P[:, P_E]
    target = np.tan(np.pi / (2.0 * c))
    out = np.empty((P.shape[0], 2))
    for k, col in enumerate((P_BF, P_BR)):
        b = P[:, col]
        # phi(x) = x - E (x - atan x) with x = B a is increasing for E <= 1: bisect on x
        lo = np.zeros_like(b)
        hi = np.full_like(b, 1.0)
        phi = lambda x: x - e * (x - np.arctan(x))  # noqa: E731
        while np.any(phi(hi) < target):
            hi = np.where(phi(hi) < target, 2.0 * hi, hi)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            below = phi(mid) < target
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        out[:, k] = 0.5 * (lo + hi) / b
    return out


@nb.njit(cache=True, nogil=True, error_model="numpy")
def reward_kernel(out, total, n_sum, cars, row_of_car, F, I, P, peak, events, w):
    """Write the weighted terms of ``cars`` into ``out`` (rows, :data:`TERM_NAMES` columns)
    and the sum of the first ``n_sum`` columns, added left to right, into ``total``.
    ``row_of_car[c]`` is the row of global car ``c`` (-1: not scored); ``peak`` holds the
    peak slip angles per row; ``w`` the weights in :data:`TERM_NAMES` order."""
    n = cars.shape[0]
    for r in range(n):
        c = cars[r]
        vx = F[F_VX, c]
        vy = F[F_VY, c]
        v2 = vx * vx + vy * vy
        off = I[I_OFF, c] != 0
        out[r, 0] = 0.0 if off else w[0] * F[F_PROGRESS_STEP, c]
        out[r, 1] = -w[1] * v2 if off else 0.0
        out[r, 2] = -w[2] * F[F_WALL_SPEED2_TIME, c]
        # kinematic blend weight of the vehicle model (smoothstep between blend speeds)
        x = (math.sqrt(v2) - P[c, P_VLO]) / (P[c, P_VHI] - P[c, P_VLO])
        if x <= 0.0:
            blend = 0.0
        elif x >= 1.0:
            blend = 1.0
        else:
            blend = x * x * (3.0 - 2.0 * x)
        ex = max(0.0, abs(F[F_ALPHAF, c]) - peak[r, 0]) + max(0.0, abs(F[F_ALPHAR, c]) - peak[r, 1])
        out[r, 3] = -w[3] * blend * ex
        out[r, 4] = -w[4] if I[I_CAR_CONTACT, c] != 0 else 0.0
        out[r, 5] = 0.0
    for k in range(events.shape[0]):
        if events[k, E_TYPE] != EV_CAR:
            continue
        a = int(events[k, E_A])
        b = int(events[k, E_B])
        if a < 0 or b < 0:
            continue
        nx = events[k, E_NX]
        ny = events[k, E_NY]
        fa = nx * math.cos(F[F_YAW, a]) + ny * math.sin(F[F_YAW, a])
        fb = nx * math.cos(F[F_YAW, b]) + ny * math.sin(F[F_YAW, b])
        if fa > REAR_END_COS and fb > REAR_END_COS:
            behind = a  # a's nose into b's tail
        elif fa < -REAR_END_COS and fb < -REAR_END_COS:
            behind = b  # the normal points from a to b: b's nose into a's tail
        else:
            continue
        r = row_of_car[behind]
        if r >= 0:
            v = events[k, E_VALUE]
            out[r, 5] -= w[5] * v * v
    for r in range(n):
        acc = 0.0
        for k in range(n_sum):
            acc = acc + out[r, k]
        total[r] = acc


def compute_reward_terms(F, I, P, events, cars, weights: RewardWeights | np.ndarray, peak_slip=None,
                         out: np.ndarray | None = None) -> np.ndarray:
    """Weighted reward terms ``(len(cars), NUM_TERMS)`` (float64, columns in
    :data:`TERM_NAMES` order) of one control step.

    Args:
        F, I, P: simulator state and parameter arrays (``RaceSim.F``, ``.I``, ``.P``)
            after the step.
        events: event rows of the step (``StepEvents.rows``, ``(K, NUM_E)``).
        cars: global indices of the cars to score.
        weights: :class:`RewardWeights` (or its :meth:`RewardWeights.as_array`).
        peak_slip: ``(len(cars), 2)`` peak slip angles (:func:`peak_slip_angles` of the
            cars' parameter rows); computed when None (cache it for speed).
    """
    cars = np.ascontiguousarray(cars, dtype=np.int64).reshape(-1)
    w = weights.as_array() if isinstance(weights, RewardWeights) else np.asarray(weights, dtype=np.float64)
    if peak_slip is None:
        peak_slip = peak_slip_angles(P[cars])
    row_of_car = np.full(F.shape[1], -1, dtype=np.int64)
    row_of_car[cars] = np.arange(cars.shape[0])
    ev = np.asarray(events, dtype=np.float64).reshape(-1, NUM_E)
    if out is None:
        out = np.empty((cars.shape[0], NUM_TERMS))
    total = np.empty(cars.shape[0])
    reward_kernel(out, total, NUM_TERMS, cars, row_of_car, F, I, P, np.ascontiguousarray(peak_slip, dtype=np.float64),
                  ev, w)
    return out


def reward_terms(sim, events, cars=None, weights: RewardWeights | None = None, peak_slip=None) -> np.ndarray:
    """:func:`compute_reward_terms` for a :class:`racing.sim.RaceSim` and the
    :class:`racing.sim.StepEvents` its last ``step`` returned (all cars by default)."""
    cars = np.arange(sim.num_cars) if cars is None else cars
    rows = events.rows if hasattr(events, "rows") else events
    return compute_reward_terms(sim.F, sim.I, sim.P, rows, cars, weights or RewardWeights(), peak_slip)

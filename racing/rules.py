"""Race rules and stewards: pure functions over the simulator's events.

**Contact blame** (:func:`classify_contact`, one car-to-car contact event):

1. A contact closing slower than :data:`INCIDENT_SPEED_MPS` (1 m/s) is a *racing incident*:
   nobody is blamed.
2. The cars are *alongside* when their longitudinal overlap along the track exceeds
   :data:`ALONGSIDE_OVERLAP` (30%) of a car length. Otherwise the contact is a *rear-end*
   and the car behind is to blame (it hit the car ahead) -- unless the contact normal is
   known to be mostly lateral (more than 45 degrees from the track direction, given the
   track heading) and the car ahead moved into the other (rule 3): then the car ahead cut
   across the other's bow, a *side* contact it is to blame for (both moving: *shared*).
3. Alongside, a car *moved into* the other when its lateral velocity relative to the track
   points at the other car faster than :data:`LATERAL_MOVE_MPS` (0.5 m/s), measured just
   before the contact. One mover: a *side* contact, the mover is to blame. Both: *shared*,
   nobody alone is to blame. Neither: a *racing incident*.

**Stewards** (:class:`Stewards`, per car, from the events of each control step):

* a car-to-car contact counts once per incident (a contact lasting several steps is one);
  an at-fault contact closing at :data:`PENALTY_CONTACT_SPEED_MPS` (3 m/s) or more earns a
  :data:`PENALTY_S` (5 s) penalty, a slower one a warning;
* every track-limit breach (the car's centre beyond an edge) is a strike, and a corner
  cut is one more on top of its breach (the simulator already invalidates the lap); the first :data:`FREE_STRIKES` (3)
  strikes are warnings, each later one a 5 s penalty;
* penalties are seconds added to the car's race time (:meth:`Stewards.race_time_with_penalties`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from racing.dynamics import (
    E_A, E_B, E_DA, E_DB, E_DDOTA, E_DDOTB, E_NX, E_NY, E_SA, E_SB, E_TIME, E_TYPE, E_VALUE, EV_CAR, EV_CORNER_CUT,
    EV_OFF_TRACK, EV_WALL, P_LEN,
)

INCIDENT_SPEED_MPS = 1.0  # [m/s] slower contacts are racing incidents
ALONGSIDE_OVERLAP = 0.3  # [-] share of a car length of longitudinal overlap that makes cars alongside
LATERAL_MOVE_MPS = 0.5  # [m/s] lateral speed towards the other car that counts as moving into it
LATERAL_NORMAL_COS = math.cos(math.radians(45.0))  # [-] a contact normal this far off the track is lateral
PENALTY_CONTACT_SPEED_MPS = 3.0  # [m/s] an at-fault contact this hard earns a penalty
PENALTY_S = 5.0  # [s] time penalty
FREE_STRIKES = 3  # track-limit strikes that are only warnings

KINDS = ("rear_end", "side", "shared", "racing_incident")


@dataclass(frozen=True)
class Verdict:
    kind: str  # one of KINDS
    at_fault: int  # global car index to blame, or -1
    car_a: int
    car_b: int
    closing_speed_mps: float
    reason: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "at_fault": self.at_fault, "cars": [self.car_a, self.car_b],
                "closing_speed_mps": round(self.closing_speed_mps, 2), "reason": self.reason}


def _wrap(ds: float, length: float) -> float:
    return (ds + 0.5 * length) % length - 0.5 * length


def classify_contact(row, track_length: float, car_length_m: float, track_heading: float | None = None) -> Verdict:
    """Classify and blame one car-to-car contact event row (see the module docstring).

    Args:
        row: an event row (``racing.dynamics.E_*`` columns) of type ``EV_CAR``.
        track_length: [m] for the wrap of arc lengths across the start line.
        car_length_m: [m] the length the longitudinal overlap is measured against.
        track_heading: [rad] track direction at the contact, if known: a lateral contact
            normal then tells a car cutting across another's bow from a rear-end.
    """
    a, b = int(row[E_A]), int(row[E_B])
    closing = float(row[E_VALUE])
    if closing < INCIDENT_SPEED_MPS:
        return Verdict("racing_incident", -1, a, b, closing, f"closing speed {closing:.1f} m/s below "
                       f"{INCIDENT_SPEED_MPS:g} m/s")
    ds = _wrap(float(row[E_SB]) - float(row[E_SA]), track_length)  # > 0: b is ahead of a
    overlap = car_length_m - abs(ds)
    side_b = np.sign(float(row[E_DB]) - float(row[E_DA]))  # +1: b is left of a
    a_moves = float(row[E_DDOTA]) * side_b > LATERAL_MOVE_MPS
    b_moves = float(row[E_DDOTB]) * -side_b > LATERAL_MOVE_MPS
    if overlap <= ALONGSIDE_OVERLAP * car_length_m:
        behind, ahead = (a, b) if ds > 0 else (b, a)
        ahead_moves = b_moves if ahead == b else a_moves
        if track_heading is not None and ahead_moves:
            along = abs(float(row[E_NX]) * math.cos(track_heading) + float(row[E_NY]) * math.sin(track_heading))
            if along < LATERAL_NORMAL_COS:
                if a_moves and b_moves:
                    return Verdict("shared", -1, a, b, closing, "both cars moved towards each other")
                return Verdict("side", ahead, a, b, closing, f"car {ahead} cut across the bow of the car "
                               f"behind ({abs(ds):.1f} m apart along the track, lateral contact)")
        return Verdict("rear_end", behind, a, b, closing, f"car {behind} hit the car ahead "
                       f"({abs(ds):.1f} m apart along the track, not alongside)")
    if a_moves and b_moves:
        return Verdict("shared", -1, a, b, closing, "both cars moved towards each other")
    if a_moves or b_moves:
        mover = a if a_moves else b
        return Verdict("side", mover, a, b, closing, f"car {mover} moved laterally into the car alongside")
    return Verdict("racing_incident", -1, a, b, closing, "alongside, neither car moved into the other")


class Stewards:
    """Per-car tallies of contacts, track limits, warnings and penalties for a RaceSim.

    Call :meth:`update` with the :class:`racing.sim.StepEvents` of every control step.
    """

    def __init__(self, sim):
        self.sim = sim
        n = sim.num_cars
        self.collisions = np.zeros(n, dtype=np.int64)
        self.at_fault = np.zeros(n, dtype=np.int64)
        self.wall_contacts = np.zeros(n, dtype=np.int64)
        self.track_limits = np.zeros(n, dtype=np.int64)
        self.corner_cuts = np.zeros(n, dtype=np.int64)
        self.warnings = np.zeros(n, dtype=np.int64)
        self.penalties = np.zeros(n, dtype=np.int64)
        self.penalty_s = np.zeros(n)
        self.log: list[dict] = []
        self._touching: set = set()
        self._on_wall: set = set()

    def _strike(self, c: int) -> None:
        strikes = int(self.track_limits[c] + self.corner_cuts[c])
        if strikes > FREE_STRIKES:
            self._penalise(c)
        else:
            self.warnings[c] += 1

    def _penalise(self, c: int) -> None:
        self.penalties[c] += 1
        self.penalty_s[c] += PENALTY_S

    def update(self, events) -> list[Verdict]:
        """Read one control step's events; returns the verdicts of new car contacts."""
        rows = events.rows
        verdicts = []
        touching = set()
        on_wall = set()
        for r in rows:
            typ = r[E_TYPE]
            a = int(r[E_A])
            if typ == EV_CAR:
                pair = (a, int(r[E_B]))
                touching.add(pair)
                if pair in self._touching:
                    continue  # the same incident, still in contact
                race = a // self.sim.cars_per_race
                track = self.sim.track_of(race)
                i = int(float(r[E_SA]) / track.ds) % track.n
                v = classify_contact(r, track.length, float(self.sim.P[a, P_LEN]), float(track.heading[i]))
                verdicts.append(v)
                self.collisions[list(pair)] += 1
                if v.at_fault >= 0:
                    self.at_fault[v.at_fault] += 1
                    if v.closing_speed_mps >= PENALTY_CONTACT_SPEED_MPS:
                        self._penalise(v.at_fault)
                    else:
                        self.warnings[v.at_fault] += 1
                self.log.append(dict(v.to_dict(), time_s=round(float(r[E_TIME]), 2), race=race))
            elif typ == EV_WALL:
                on_wall.add(a)
                if a not in self._on_wall:
                    self.wall_contacts[a] += 1
            elif typ == EV_OFF_TRACK:
                self.track_limits[a] += 1
                self._strike(a)
            elif typ == EV_CORNER_CUT:
                self.corner_cuts[a] += 1
                self._strike(a)
        self._touching = touching
        self._on_wall = on_wall
        return verdicts

    def race_time_with_penalties(self, car: int, race_time_s: float) -> float:
        return float(race_time_s + self.penalty_s[car])

    def summary(self, car: int) -> dict:
        return {
            "collisions": int(self.collisions[car]),
            "at_fault_collisions": int(self.at_fault[car]),
            "wall_contacts": int(self.wall_contacts[car]),
            "track_limits": int(self.track_limits[car]),
            "corner_cuts": int(self.corner_cuts[car]),
            "warnings": int(self.warnings[car]),
            "penalties": int(self.penalties[car]),
            "penalty_s": float(self.penalty_s[car]),
        }

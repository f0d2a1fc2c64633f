"""Stewards: each blame rule on synthetic event rows, then staged two-car scenes."""

import numpy as np
import pytest

from racing import dynamics as dy
from racing.rules import (
    ALONGSIDE_OVERLAP, FREE_STRIKES, INCIDENT_SPEED_MPS, LATERAL_MOVE_MPS, PENALTY_CONTACT_SPEED_MPS, PENALTY_S, Stewards,
    classify_contact,
)
from racing.sim import RaceSim, StepEvents

L = 1000.0  # track length
CAR = 4.6  # car length


def contact(sa, sb, da=0.0, db=0.0, ddota=0.0, ddotb=0.0, closing=5.0, a=0, b=1):
    r = np.zeros(dy.NUM_E)
    r[dy.E_TYPE] = dy.EV_CAR
    r[dy.E_A], r[dy.E_B] = a, b
    r[dy.E_VALUE] = closing
    r[dy.E_SA], r[dy.E_SB], r[dy.E_DA], r[dy.E_DB] = sa, sb, da, db
    r[dy.E_DDOTA], r[dy.E_DDOTB] = ddota, ddotb
    return r


def test_rear_end_blames_the_car_behind():
    v = classify_contact(contact(100.0, 104.5), L, CAR)
    assert (v.kind, v.at_fault) == ("rear_end", 0)
    v = classify_contact(contact(104.5, 100.0), L, CAR)
    assert (v.kind, v.at_fault) == ("rear_end", 1)


def test_rear_end_across_the_line_uses_wrapped_distance():
    v = classify_contact(contact(L - 2.0, 2.5), L, CAR)  # b just past the line, ahead of a
    assert (v.kind, v.at_fault) == ("rear_end", 0)


def test_alongside_threshold():
    just_alongside = CAR * (1 - ALONGSIDE_OVERLAP) - 0.05
    not_alongside = CAR * (1 - ALONGSIDE_OVERLAP) + 0.05
    assert classify_contact(contact(100.0, 100.0 + not_alongside), L, CAR).kind == "rear_end"
    v = classify_contact(contact(100.0, 100.0 + just_alongside, da=0.0, db=2.0, ddota=1.0), L, CAR)
    assert v.kind == "side"


def test_side_contact_blames_the_mover():
    # b is 2 m left of a; a moves left (towards b) at 1 m/s
    v = classify_contact(contact(100.0, 101.0, da=0.0, db=2.0, ddota=1.0, ddotb=0.0), L, CAR)
    assert (v.kind, v.at_fault) == ("side", 0)
    # b moves right (towards a)
    v = classify_contact(contact(100.0, 101.0, da=0.0, db=2.0, ddota=0.0, ddotb=-1.0), L, CAR)
    assert (v.kind, v.at_fault) == ("side", 1)
    # a moving away from b is not to blame
    v = classify_contact(contact(100.0, 101.0, da=0.0, db=2.0, ddota=-1.0, ddotb=0.0), L, CAR)
    assert v.kind == "racing_incident" and v.at_fault == -1


def test_both_moving_in_is_shared_and_slow_moves_do_not_count():
    v = classify_contact(contact(100.0, 101.0, da=0.0, db=2.0, ddota=1.0, ddotb=-1.0), L, CAR)
    assert (v.kind, v.at_fault) == ("shared", -1)
    slow = LATERAL_MOVE_MPS * 0.9
    v = classify_contact(contact(100.0, 101.0, da=0.0, db=2.0, ddota=slow, ddotb=-slow), L, CAR)
    assert v.kind == "racing_incident"


def test_gentle_touch_is_a_racing_incident():
    v = classify_contact(contact(100.0, 104.5, closing=INCIDENT_SPEED_MPS * 0.5), L, CAR)
    assert (v.kind, v.at_fault) == ("racing_incident", -1)


def _events(*rows):
    rows = np.array(rows) if rows else np.zeros((0, dy.NUM_E))
    return StepEvents(rows, np.zeros(len(rows), dtype=np.int64), 0)


def test_stewards_count_an_incident_once_and_penalise_hard_contacts(ring100):
    sim = RaceSim(ring100, "gt3", 1, 2)
    st = Stewards(sim)
    hard = contact(100.0, 104.5, closing=6.0)
    st.update(_events(hard))
    st.update(_events(hard))  # still touching: the same incident
    assert st.summary(0)["collisions"] == 1 and st.summary(1)["collisions"] == 1
    assert st.summary(0)["at_fault_collisions"] == 1 and st.summary(1)["at_fault_collisions"] == 0
    assert st.summary(0)["penalty_s"] == PENALTY_S
    st.update(_events())
    st.update(_events(contact(100.0, 104.5, closing=2.0)))  # a new, gentler at-fault touch
    assert st.summary(0)["collisions"] == 2 and st.summary(0)["warnings"] == 1
    assert st.race_time_with_penalties(0, 100.0) == 100.0 + PENALTY_S
    assert len(st.log) == 2 and st.log[0]["kind"] == "rear_end"


def test_track_limit_warnings_then_penalties(ring100):
    sim = RaceSim(ring100, "gt3", 1, 1)
    st = Stewards(sim)
    off = np.zeros(dy.NUM_E)
    off[dy.E_TYPE] = dy.EV_OFF_TRACK
    for k in range(FREE_STRIKES):
        st.update(_events(off))
    assert st.summary(0)["warnings"] == FREE_STRIKES and st.summary(0)["penalties"] == 0
    st.update(_events(off))
    cut = off.copy()
    cut[dy.E_TYPE] = dy.EV_CORNER_CUT
    st.update(_events(cut))
    s = st.summary(0)
    assert s["track_limits"] == FREE_STRIKES + 1 and s["corner_cuts"] == 1
    assert s["penalties"] == 2 and s["penalty_s"] == 2 * PENALTY_S


def _run_scene(track, s, d, speed, steer_b=0.0, steer_a=0.0, steps=30):
    sim = RaceSim(track, "gt3", 1, 2)
    sim.reset_race(0, s=s, d=d, speed=speed)
    st = Stewards(sim)
    verdicts = []
    for _ in range(steps):
        verdicts += st.update(sim.step([[steer_a, 0.0], [steer_b, 0.0]]))
    return verdicts, st


def test_staged_rear_end(big_ring):
    verdicts, st = _run_scene(big_ring, s=[30.0, 20.0], d=[0.0, 0.0], speed=[20.0, 28.0])
    assert verdicts and verdicts[0].kind == "rear_end" and verdicts[0].at_fault == 1
    assert st.summary(1)["at_fault_collisions"] == 1 and st.summary(0)["at_fault_collisions"] == 0


def test_staged_side_swipe_blames_the_car_that_turned_in(big_ring):
    # side by side at the same speed; car 1 (on the right) steers left into car 0
    verdicts, st = _run_scene(big_ring, s=[50.0, 50.0], d=[1.3, -1.3], speed=[25.0, 25.0], steer_b=0.15)
    assert verdicts and verdicts[0].kind == "side" and verdicts[0].at_fault == 1
    assert st.summary(0)["at_fault_collisions"] == 0


def test_staged_both_turning_in_is_shared(big_ring):
    verdicts, _ = _run_scene(big_ring, s=[50.0, 50.0], d=[1.3, -1.3], speed=[25.0, 25.0], steer_a=-0.15,
                             steer_b=0.15)
    assert verdicts and verdicts[0].kind == "shared" and verdicts[0].at_fault == -1


# ------------------------------------------------------------------ threshold edges
@pytest.mark.parametrize("closing, kind", [(INCIDENT_SPEED_MPS - 0.01, "racing_incident"),
                                           (INCIDENT_SPEED_MPS + 0.01, "rear_end")])
def test_incident_speed_edge(closing, kind):
    assert classify_contact(contact(100.0, 104.5, closing=closing), L, CAR).kind == kind


@pytest.mark.parametrize("ddot, kind", [(LATERAL_MOVE_MPS - 0.01, "racing_incident"), (LATERAL_MOVE_MPS + 0.01, "side")])
def test_lateral_move_edge(ddot, kind):
    # b is 2 m left of a and alongside; a drifts left at the given speed
    assert classify_contact(contact(100.0, 101.0, da=0.0, db=2.0, ddota=ddot), L, CAR).kind == kind


def test_the_car_behind_is_blamed_whichever_index_it_has_and_across_the_line():
    for sa, sb, behind in ((L - 1.0, 3.0, 0), (3.0, L - 1.0, 1), (500.0, 495.0, 1)):
        v = classify_contact(contact(sa, sb), L, CAR)
        assert (v.kind, v.at_fault) == ("rear_end", behind), (sa, sb)
        assert v.reason and v.closing_speed_mps == 5.0


def test_mover_on_the_right_and_left_side():
    # b on the right of a (db < da): a moving right (negative d-dot) is the mover
    v = classify_contact(contact(100.0, 100.5, da=1.0, db=-1.0, ddota=-1.0), L, CAR)
    assert (v.kind, v.at_fault) == ("side", 0)
    v = classify_contact(contact(100.0, 100.5, da=1.0, db=-1.0, ddotb=1.0), L, CAR)
    assert (v.kind, v.at_fault) == ("side", 1)


@pytest.mark.parametrize("closing, penalised", [(PENALTY_CONTACT_SPEED_MPS - 0.01, False),
                                                (PENALTY_CONTACT_SPEED_MPS, True)])
def test_penalty_speed_edge(ring100, closing, penalised):
    st = Stewards(RaceSim(ring100, "gt3", 1, 2))
    st.update(_events(contact(100.0, 104.5, closing=closing)))
    s = st.summary(0)
    assert s["at_fault_collisions"] == 1
    assert (s["penalties"], s["warnings"]) == ((1, 0) if penalised else (0, 1))
    assert st.summary(1)["penalties"] == 0 and st.summary(1)["warnings"] == 0


def test_stewards_count_walls_once_per_contact_and_report_every_key(ring100):
    st = Stewards(RaceSim(ring100, "gt3", 1, 1))
    wall = np.zeros(dy.NUM_E)
    wall[dy.E_TYPE] = dy.EV_WALL
    st.update(_events(wall))
    st.update(_events(wall))  # still scraping: the same contact
    st.update(_events())
    st.update(_events(wall))  # a new one
    s = st.summary(0)
    assert s["wall_contacts"] == 2
    assert set(s) == {"collisions", "at_fault_collisions", "wall_contacts", "track_limits", "corner_cuts",
                      "warnings", "penalties", "penalty_s"}
    assert st.race_time_with_penalties(0, 61.5) == 61.5  # no penalty yet


def test_a_corner_cut_is_a_strike_on_top_of_its_breach(ring100):
    st = Stewards(RaceSim(ring100, "gt3", 1, 1))
    off = np.zeros(dy.NUM_E)
    off[dy.E_TYPE] = dy.EV_OFF_TRACK
    cut = off.copy()
    cut[dy.E_TYPE] = dy.EV_CORNER_CUT
    st.update(_events(off, cut))  # one excursion that cut the corner: two strikes
    s = st.summary(0)
    assert (s["track_limits"], s["corner_cuts"], s["warnings"], s["penalties"]) == (1, 1, 2, 0)
    st.update(_events(off, cut))  # strikes 3 and 4: a warning, then the first penalty
    s = st.summary(0)
    assert (s["warnings"], s["penalties"], s["penalty_s"]) == (FREE_STRIKES, 1, PENALTY_S)
    assert st.race_time_with_penalties(0, 100.0) == 100.0 + PENALTY_S


# ------------------------------------------------------------------ staged scenes
def test_staged_gentle_touch_is_a_racing_incident(big_ring):
    # nose to tail, 0.3 m apart, the car behind 0.6 m/s faster: it touches, gently
    verdicts, st = _run_scene(big_ring, s=[25.0, 25.0 - 4.9], d=[0.0, 0.0], speed=[20.0, 20.6], steps=10)
    assert verdicts and verdicts[0].kind == "racing_incident" and verdicts[0].at_fault == -1
    assert verdicts[0].closing_speed_mps < INCIDENT_SPEED_MPS
    assert st.summary(1)["at_fault_collisions"] == 0 and st.summary(1)["collisions"] == 1


def test_staged_side_swipe_from_the_left_blames_the_left_car(big_ring):
    # car 0 on the left steers right into car 1
    verdicts, st = _run_scene(big_ring, s=[50.0, 50.0], d=[1.3, -1.3], speed=[25.0, 25.0], steer_a=-0.15)
    assert verdicts and verdicts[0].kind == "side" and verdicts[0].at_fault == 0
    assert st.summary(1)["at_fault_collisions"] == 0


def test_cutting_across_the_bow_blames_the_car_ahead_when_the_normal_is_lateral():
    # not alongside (b 4.2 m ahead of a), b on the left moving right into a's path
    row = contact(100.0, 104.2, da=0.0, db=1.5, ddotb=-1.0)
    row[dy.E_NX], row[dy.E_NY] = 0.2, 0.98  # a to b: mostly lateral (track runs along +x)
    v = classify_contact(row, L, CAR, track_heading=0.0)
    assert (v.kind, v.at_fault) == ("side", 1) and "cut across" in v.reason
    # the same without the heading, or with a longitudinal normal, is a rear-end
    assert classify_contact(row, L, CAR).kind == "rear_end"
    row[dy.E_NX], row[dy.E_NY] = 0.98, 0.2
    assert classify_contact(row, L, CAR, track_heading=0.0).kind == "rear_end"
    # the car ahead not moving across: the car behind is to blame whatever the normal
    row = contact(100.0, 104.2, da=0.0, db=1.5)
    row[dy.E_NX], row[dy.E_NY] = 0.2, 0.98
    assert classify_contact(row, L, CAR, track_heading=0.0).at_fault == 0
    # both moving in at a lateral normal: shared
    row = contact(100.0, 104.2, da=0.0, db=1.5, ddota=1.0, ddotb=-1.0)
    row[dy.E_NX], row[dy.E_NY] = 0.2, 0.98
    assert classify_contact(row, L, CAR, track_heading=0.0).kind == "shared"

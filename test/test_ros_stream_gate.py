"""StreamGate without ROS: one stray message can neither fix nor take over a stream's identity
or time; agreement of stream_change_frames consecutive frames can."""

import pytest

from superglue_ros.ros.stream_gate import StreamGate

S = 1_000_000_000
NOW = 1_800_000_000 * S


def accept(gate, stamp, frame_id="cam"):
    decision = gate.check(stamp, frame_id, NOW)
    assert decision.action == "accept", decision.message
    gate.accepted(stamp, frame_id, decision.generation)
    return decision


def test_future_stamp_is_skipped_and_does_not_move_the_stream():
    gate = StreamGate(dict(max_future_stamp_s=10.0))
    accept(gate, NOW - 5 * S)
    far = gate.check(NOW + 3600 * S, "cam", NOW)
    assert (
        far.action == "skip"
        and "3600.0 s ahead of the node clock (max_future_stamp_s 10)" in far.message
    )
    assert gate.check(NOW + 5 * S, "cam", NOW).action == "accept"  # within the tolerance
    accept(gate, NOW - 4 * S)  # the stream goes on
    assert gate.check(2**31 * S, "cam", NOW).action == "skip"
    assert gate.check(2**31 * S, "cam", 0).action == "accept"  # sim time without a clock yet
    assert (
        StreamGate(dict(max_future_stamp_s=0.0)).check(NOW + 3600 * S, "cam", NOW).action
        == "accept"
    )


def test_only_an_accepted_frame_fixes_the_frame_id():
    gate = StreamGate()
    first = gate.check(S, "intruder", NOW)
    assert first.action == "accept" and gate.frame_id is None  # let through, not yet accepted
    # ... the front-end rejects it (1x1 image): accepted() is never called
    accept(gate, 2 * S, "cam")
    assert gate.frame_id == "cam"
    stray = gate.check(3 * S, "intruder", NOW)
    assert (
        stray.action == "skip"
        and "frame_id 'intruder' (this stream is 'cam'; 1 of 3" in stray.message
    )


def test_new_frame_id_after_consecutive_frames_resets_the_stream():
    gate = StreamGate(dict(stream_change_frames=3))
    accept(gate, S, "cam")
    assert gate.check(2 * S, "new", NOW).action == "skip"
    assert gate.check(3 * S, "new", NOW).action == "skip"
    accept(gate, 4 * S, "cam")  # the old id interrupts the run
    actions = [gate.check((5 + k) * S, "new", NOW).action for k in range(3)]
    assert actions == ["skip", "skip", "reset"]
    assert gate.frame_id is None
    gen = gate.check(8 * S, "new", NOW).generation
    gate.accepted(7 * S, "new", gen)
    assert gate.frame_id == "new" and gate.last_stamp_ns == 7 * S
    assert gate.check(9 * S, "cam", NOW).action == "skip"


def test_backward_jump_resets_after_consecutive_frames_and_strays_do_not():
    gate = StreamGate(dict(stream_change_frames=3))
    accept(gate, 100 * S)
    dup = gate.check(100 * S, "cam", NOW)
    assert dup.action == "skip" and dup.message.startswith("duplicate stamp")
    stray = gate.check(50 * S, "cam", NOW)
    assert stray.action == "skip" and stray.message.startswith(f"out-of-order stamp {50 * S} ns")
    accept(gate, 101 * S)  # a stray older frame is forgotten
    assert [gate.check(k * S, "cam", NOW).action for k in (1, 2, 2)] == ["skip", "skip", "skip"]
    # (2, 2) is not a newer frame: the run restarts; three increasing older stamps reset
    assert [gate.check(k * S, "cam", NOW).action for k in (3, 4)] == ["skip", "reset"]
    assert gate.last_stamp_ns is None


def test_frames_let_through_before_a_reset_do_not_count_after_it():
    gate = StreamGate(dict(stream_change_frames=1))
    accept(gate, 10 * S, "cam")
    in_flight = gate.check(11 * S, "cam", NOW)  # being processed by the worker
    assert gate.check(12 * S, "new", NOW).action == "reset"
    gate.accepted(11 * S, "cam", in_flight.generation)  # finishes after the reset
    assert gate.frame_id is None and gate.last_stamp_ns is None


def test_conf_validation():
    with pytest.raises(ValueError):
        StreamGate(dict(stream_change_frames=0))
    with pytest.raises(ValueError):
        StreamGate(dict(unknown=1))


def test_generation_counts_resets():
    gate = StreamGate(dict(stream_change_frames=1))
    before = gate.check(S, "cam", NOW).generation
    assert gate.generation == before
    gate.reset()
    assert gate.generation == before + 1

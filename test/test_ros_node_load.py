"""A camera at 30 Hz, faster than the node can process: frames are dropped (latest-frame
policy, never queued), every published frame is accounted for, latency stays bounded and the
process's memory stays flat over a few hundred frames.

Bounds are generous on purpose (shared 2-core machine): this checks that nothing queues or
grows, not how fast the matcher is (that lives in superglue-benchmark and the demo report).
"""

import threading
import time

import numpy as np
import rclpy
from rclpy.context import Context
from superglue_ros.ros.executor import CallbackPoolExecutor
from rclpy.parameter import Parameter
from superglue_ros_msgs.msg import Correspondences

from ros_helpers import Probe, rss_bytes
from superglue_ros.frontend.synthetic import make_sequence
from superglue_ros.ros.messages import stamp_to_ns
from superglue_ros.ros.node import SuperGlueNode
from superglue_ros.ros.player import SequencePlayer

FRAMES = 300
WARM_UP = 60
RSS_GROWTH_BOUND = 64 * 2**20  # bytes allowed between frame WARM_UP and frame FRAMES
LATENCY_BOUND_S = 15.0  # a frame waits for at most one frame in progress


def test_faster_camera_drops_frames_with_flat_memory_and_bounded_latency():
    sequence = make_sequence(num_frames=100)
    context = Context()
    rclpy.init(context=context)
    executor = CallbackPoolExecutor(num_threads=4, context=context)
    params = dict(
        preset="sift",
        max_keypoints=1024,
        reliability="reliable",
        debug_image="never",
        max_keyframes=8,
        working_width=640,
        working_height=480,
    )
    node = SuperGlueNode(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )
    probe = Probe(context)
    player = SequencePlayer(
        sequence, rate=30.0, loops=FRAMES // len(sequence), reliable=True, context=context
    )
    player.timer.cancel()
    for n in (node, probe, player):
        executor.add_node(n)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        probe.wait_for(lambda: player.image_pub.get_subscription_count() > 0, 20, "node discovery")
        player.timer.reset()
        probe.wait_for(lambda: len(player.published) >= WARM_UP, 60, "warm-up frames")
        rss_warm = rss_bytes()
        probe.wait_for(lambda: player.done, 120, "the player to finish")
        # the node finishes the frame in progress and the one pending, then goes idle
        probe.wait_for(
            lambda: (
                sum(node.stats()[""][k] for k in ("processed", "dropped", "rejected")) >= FRAMES
            ),
            60,
            "every frame processed or dropped",
        )
        rss_end = rss_bytes()
        stats = node.stats()[""]
        time.sleep(0.5)
        with probe.lock:
            odometry = [m for m in probe.correspondences if m.kind == Correspondences.ODOMETRY]
    finally:
        executor.shutdown(timeout_sec=5.0)
        for n in (player, probe, node):
            n.destroy_node()
        rclpy.shutdown(context=context)

    latencies = np.array(stats["latencies_s"])
    print(
        f"\n{FRAMES} frames at 30 Hz: {stats['processed']} processed, {stats['dropped']} dropped; "
        f"latency p50 {np.percentile(latencies, 50) * 1e3:.0f} ms, p90 "
        f"{np.percentile(latencies, 90) * 1e3:.0f} ms, max {latencies.max() * 1e3:.0f} ms; "
        f"RSS {rss_warm / 2**20:.0f} -> {rss_end / 2**20:.0f} MiB"
    )
    assert stats["rejected"] == 0 and stats["failed"] == 0
    # reliable QoS: every frame reached the node, and was either processed or dropped
    assert stats["processed"] + stats["dropped"] == FRAMES
    assert stats["dropped"] > 0, "a 30 Hz camera should outrun SIFT matching on this machine"
    assert stats["processed"] >= 10
    assert latencies.max() < LATENCY_BOUND_S
    assert rss_end - rss_warm < RSS_GROWTH_BOUND
    # published in stamp order, one message per processed frame (the first is a keyframe only)
    stamps = [stamp_to_ns(m.header.stamp) for m in odometry]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert len(odometry) == stats["processed"] - 1
    assert len(node.cameras[0].frontend.cache) <= 8

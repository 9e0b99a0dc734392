"""Inputs that used to break a running superglue_node for good (issue 15), over real DDS: a
future stamp, a rejected first frame from another frame_id, a PNG bomb, a self loop closure,
a featureless keyframe, a backward time jump, a signal while frames flow. Each case asserts its
log line, that the node keeps running, and that the good frames sent after it are processed
correctly: their inliers agree with the synthetic sequence's exact ground truth.

Plumbing only, so the fast ORB preset (as test_ros_node_inputs.py).
"""

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from superglue_ros.ros.executor import CallbackPoolExecutor
from sensor_msgs.msg import CompressedImage
from superglue_ros_msgs.msg import Correspondences, LoopCandidates
from superglue_ros_msgs.srv import Reset

from ros_helpers import Probe, image_msg, png_bomb, running_node, check_inliers_against_homography
from superglue_ros.frontend.synthetic import make_sequence
from superglue_ros.ros.messages import make_header, stamp_to_ns

SEQUENCE = make_sequence(num_frames=200, loop_frames=200)  # slow motion: ORB tracks easily
BASE = dict(
    preset="orb",
    reliability="reliable",
    warn_throttle_s=0.0,
    debug_image="never",
    geometric_model="homography",
    loop_geometric_model="homography",
)
S = 1_000_000_000


class Stream:
    """Frames of SEQUENCE with chosen stamps; remembers which frame each stamp showed, so a
    reply can be checked against the exact homography between query and reference."""

    def __init__(self, probe, compressed=False, stamp_ns=100 * S, index=0):
        self.probe, self.compressed = probe, compressed
        self.stamp_ns, self.index = stamp_ns, index
        self.frame_of: dict[int, int] = {}

    def send(self, frame_id="cam", stamp_ns=None, image=None) -> int:
        if stamp_ns is None:
            self.stamp_ns += S // 10
            stamp_ns = self.stamp_ns
        if image is None:
            assert stamp_ns not in self.frame_of, "each good frame needs its own stamp"
            self.frame_of[stamp_ns] = self.index
            image = SEQUENCE.frame(self.index)
            self.index += 1
        if self.compressed:
            msg = CompressedImage(header=make_header(stamp_ns, frame_id), format="jpeg")
            msg.data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            self.probe.compressed_pub.publish(msg)
        else:
            self.probe.image_pub.publish(image_msg(image, stamp_ns, frame_id))
        return stamp_ns

    def good(self, frame_id="cam", stamp_ns=None, first=False):
        """Send a good frame; return its ODOMETRY reply after checking it against ground truth
        (or, with first=True, the KeyframeFeatures it became)."""
        stamp = self.send(frame_id, stamp_ns)
        if first:
            return self.probe.wait_for(
                lambda: next(
                    (k for k in self.probe.keyframes if stamp_to_ns(k.header.stamp) == stamp), None
                ),
                what=f"the keyframe of stamp {stamp}",
            )
        reply = self.probe.correspondence_for(stamp)
        self.check(reply)
        assert reply.header.frame_id == frame_id
        return reply

    def check(self, msg, min_inliers=50):
        """>= 90% of the inliers within 3 px of ground truth, and enough of them."""
        check_inliers_against_homography(SEQUENCE, self.frame_of, msg, min_inliers)


def stats(node):
    return node.stats()[""]


def send_rejected(stream, node, *args, **kwargs) -> int:
    """Send one frame the node must skip and wait until it did: the node's image reader keeps
    one message, so the next one must not be sent before this one was taken."""
    before = stats(node)["rejected"]
    stamp = stream.send(*args, **kwargs)
    stream.probe.wait_for(lambda: stats(node)["rejected"] > before, what="the frame rejected")
    return stamp


def keyframe_ids(probe):
    with probe.lock:
        return sorted(k.id for k in probe.keyframes)


def test_future_stamp_is_skipped_and_the_stream_goes_on():
    """Before: a frame stamped an hour ahead became a keyframe and every later, correct frame
    was rejected as out of order, until restart."""
    with running_node(BASE) as (node, probe):
        stream = Stream(probe, stamp_ns=time.time_ns())
        stream.good(first=True)
        stream.good()
        rejected = stats(node)["rejected"]
        for stamp in (time.time_ns() + 3600 * S, (2**31 - 1) * S):
            send_rejected(stream, node, stamp_ns=stamp, image=SEQUENCE.frame(5))
        for _ in range(3):
            reply = stream.good()
        assert reply.reference_id in keyframe_ids(probe) and stats(node)["failed"] == 0
        assert stats(node)["rejected"] == rejected + 2
        probe.log_containing(f"stamp {(2**31 - 1) * S} ns is ")
        probe.log_containing("s ahead of the node clock (max_future_stamp_s 10): frame skipped")
        with probe.lock:  # nothing of the skipped frames reached the back-end
            assert all(
                stamp_to_ns(m.header.stamp) in stream.frame_of for m in probe.correspondences
            )


def test_rejected_first_frame_does_not_fix_the_frame_id_and_a_new_id_takes_over_after_n():
    """Before: a 1x1 first frame from 'intruder', rejected for its size, still made every
    later frame of the real camera 'a frame from unknown camera frame_id'."""
    with running_node(dict(BASE, stream_change_frames=3)) as (node, probe):
        stream = Stream(probe)
        stream.send("intruder", image=np.zeros((1, 1), np.uint8))
        probe.log_containing("frame rejected: image 1x1 is smaller than min_image_side=16")
        kf = stream.good(first=True)
        assert kf.header.frame_id == "cam"
        stream.good()
        assert node.cameras[0].frame_id == "cam"
        # one stray frame from another camera is skipped...
        stray = send_rejected(stream, node, "cam2", image=SEQUENCE.frame(3))
        probe.log_containing("frame_id 'cam2' (this stream is 'cam'; 1 of 3 consecutive frames")
        stream.good()
        # ... three in a row from the same new id switch the stream (the camera was replaced)
        send_rejected(stream, node, "cam2")
        send_rejected(stream, node, "cam2")
        probe.log_containing("frame_id 'cam2' (this stream is 'cam'; 2 of 3 consecutive frames")
        switch = stream.send("cam2")
        probe.log_containing(
            "frame_id changed from 'cam' to 'cam2' (3 consecutive frames): camera "
            "state reset to follow the new id"
        )
        new_kf = probe.wait_for(
            lambda: next(
                (k for k in probe.keyframes if stamp_to_ns(k.header.stamp) == switch), None
            ),
            what="the keyframe of the new stream",
        )
        assert new_kf.header.frame_id == "cam2" and new_kf.id > kf.id
        reply = stream.good("cam2")
        assert reply.reference_id == new_kf.id
        with probe.lock:
            assert all(stamp_to_ns(m.header.stamp) != stray for m in probe.correspondences)
        assert node.cameras[0].frame_id == "cam2" and stats(node)["failed"] == 0


def test_backward_time_jump_resets_the_camera_and_the_reset_service():
    """Before: after a looped bag or a sim-time reset every frame was 'out-of-order', forever."""
    with running_node(dict(BASE, stream_change_frames=3)) as (node, probe):
        stream = Stream(probe, stamp_ns=1000 * S)
        first = stream.good(first=True)
        stream.good()
        stream.stamp_ns = 10 * S  # the bag starts over
        send_rejected(stream, node)
        send_rejected(stream, node)
        probe.log_containing(f"out-of-order stamp {10 * S + 2 * S // 10} ns (last accepted")
        jump = stream.send()
        probe.log_containing(
            f"time jumped back from {1000 * S + 2 * S // 10} ns to {jump} ns (3 "
            "consecutive frames agree: looped bag or sim-time reset): camera state reset"
        )
        kf = probe.wait_for(
            lambda: next((k for k in probe.keyframes if stamp_to_ns(k.header.stamp) == jump), None),
            what="a keyframe after the jump",
        )
        assert kf.id > first.id
        assert stream.good().reference_id == kf.id

        client = probe.create_client(Reset, "reset")  # per camera, beside verify_loop
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(Reset.Request())
        probe.wait_for(future.done, 30.0, "the reset response")
        answer = future.result()
        assert answer.success and answer.message.startswith("camera '.' reset: ")
        assert "keyframes forgotten" in answer.message
        probe.log_containing("(reset service)")
        again = stream.good(stamp_ns=5 * S, first=True)  # older than anything before: accepted
        assert again.id > kf.id and len(node.cameras[0].frontend.cache) == 1
        reply = stream.good()
        assert reply.reference_id == again.id and stats(node)["failed"] == 0


def peak_rss_since_reset() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in bytes; clear_peak() resets the high-water mark."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def clear_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


def test_png_bomb_is_rejected_from_its_header_without_memory():
    """Before: a 48 KB PNG that decodes to 20000x20000 cost 1.14 GB and seconds of decoding per
    message, in the image callback, before the latest-frame policy could drop anything."""
    with running_node(dict(BASE, use_compressed=True)) as (node, probe):
        stream = Stream(probe, compressed=True)
        stream.good(first=True)
        stream.good()
        bomb = CompressedImage(format="png")
        bomb.data = png_bomb(20000, 20000)
        jpeg = bytearray(cv2.imencode(".jpg", SEQUENCE.frame(9))[1].tobytes())
        sof = jpeg.index(b"\xff\xc0")
        jpeg[sof + 5 : sof + 9] = (20000).to_bytes(2, "big") * 2
        fake_jpeg = CompressedImage(format="jpeg")
        fake_jpeg.data = bytes(jpeg)
        rejected = stats(node)["rejected"]
        if not clear_peak():
            pytest.skip("/proc/self/clear_refs not writable: cannot measure the peak RSS")
        rss_before, _ = peak_rss_since_reset()
        for k in range(5):
            for msg in (bomb, fake_jpeg):
                msg.header = make_header(stream.stamp_ns + 1 + k * 3 + (msg is fake_jpeg), "cam")
                before = stats(node)["rejected"]
                probe.compressed_pub.publish(msg)
                probe.wait_for(lambda: stats(node)["rejected"] > before, 60.0, "the rejection")
        assert stats(node)["rejected"] == rejected + 10
        _, peak = peak_rss_since_reset()
        print(
            f"\nRSS {rss_before / 2**20:.0f} MiB, peak while the bombs arrived "
            f"{peak / 2**20:.0f} MiB ({stats(node)['rejected'] - rejected} rejected)"
        )
        assert peak - rss_before < 64 * 2**20  # one decoded bomb would be 400 MB
        probe.log_containing(
            "image rejected: png header: image too large: 20000x20000 = "
            "400000000 pixels > max_image_pixels 16777216 (not decoded)"
        )
        probe.log_containing("image rejected: jpeg header: image too large: 20000x20000")
        stream.stamp_ns += S
        for _ in range(2):
            reply = stream.good()
        assert (reply.query_width, reply.query_height) == (640, 480) and stats(node)["failed"] == 0


def test_compressed_frames_are_decoded_by_the_worker():
    """The callback checks a compressed message's header and keeps it undecoded; the worker
    decodes the newest one (frames dropped meanwhile are never decoded). A payload whose
    header is fine but whose data is corrupt is rejected there, and the stream goes on."""
    with running_node(dict(BASE, use_compressed=True)) as (node, probe):
        stream = Stream(probe, compressed=True)
        stream.good(first=True)
        for _ in range(10):  # faster than ORB matching: some are dropped
            last = stream.send()
        probe.correspondence_for(last)
        corrupt = bytearray(png_bomb(640, 480))
        idat = corrupt.index(b"IDAT")
        corrupt[idat + 6 : idat + 12] = b"garbag"
        msg = CompressedImage(header=make_header(stream.stamp_ns + 1, "cam"), format="png")
        msg.data = bytes(corrupt)
        probe.compressed_pub.publish(msg)
        probe.log_containing("image rejected: could not decode compressed image (format 'png', ")
        reply = stream.good()
        assert reply.reference_id == 0 and stats(node)["failed"] == 0
        with probe.lock:
            replies = [m for m in probe.correspondences if m.kind == Correspondences.ODOMETRY]
        # a frame counts as processed just after its reply is out
        probe.wait_for(
            lambda: stats(node)["processed"] == len(replies) + 1, what="the last reply counted"
        )
        assert stats(node)["processed"] <= 12
        for reply in replies:
            stream.check(reply)


def test_self_loop_and_neighbours_are_never_published_as_loop_closures():
    """Before: VerifyLoop(q, [q]) answered VERIFIED with every keypoint an inlier, and
    loop_candidates published a LOOP_CLOSURE with query_id == reference_id."""
    with running_node(
        dict(BASE, min_gap_frames=1, max_frames=1, loop_closure=False, loop_min_id_gap=3)
    ) as (node, probe):
        stream = Stream(probe)
        stream.good(first=True)
        for _ in range(4):
            stream.good()
        ids = keyframe_ids(probe)
        assert ids == [0, 1, 2, 3, 4]
        probe.candidates_pub.publish(
            LoopCandidates(
                query_id=4, candidate_ids=[4, 3, 2, 1], candidate_scores=[0.9, 0.8, 0.7, 0.6]
            )
        )
        probe.log_containing("loop request query 4: 1 candidate(s) self_loop")
        probe.log_containing("loop request query 4: 2 candidate(s) too_close")
        loop = probe.correspondence_for(
            stamp_to_ns(probe.keyframes[4].header.stamp), Correspondences.LOOP_CLOSURE
        )
        assert (loop.query_id, loop.reference_id) == (4, 1)
        stream.check(loop)
        probe.candidates_pub.publish(
            LoopCandidates(query_id=4, candidate_ids=[1, 0], candidate_scores=[0.5])
        )
        probe.log_containing("1 candidate_scores for 2 candidate_ids, scores ignored")
        response = probe.call_verify(4, [4])
        assert response.success and response.results[0].status == response.results[0].SELF_LOOP
        assert response.results[0].correspondences.num_inliers == 0
        stream.good()
        time.sleep(0.5)
        with probe.lock:
            loops = [m for m in probe.correspondences if m.kind == Correspondences.LOOP_CLOSURE]
        assert loops and all(m.reference_id <= m.query_id - 3 for m in loops)


def test_featureless_frame_is_not_made_a_keyframe():
    """Before: a black frame became a keyframe with 0 keypoints and cost the next frames their
    odometry. Now: first, it is skipped; later, the previous keyframe stays the reference."""
    black = np.zeros((480, 640, 3), np.uint8)
    with running_node(dict(BASE, min_gap_frames=1)) as (node, probe):
        stream = Stream(probe)
        stream.send(image=black)
        probe.log_containing(
            "frame rejected: 0 keypoints < min_keyframe_keypoints 20 and no "
            "keyframe yet: frame skipped"
        )
        kf = stream.good(first=True)
        dark = stream.send(image=black)
        probe.log_containing(
            "keypoints < min_keyframe_keypoints 20: not made a keyframe, "
            f"keyframe {kf.id} stays the reference"
        )
        assert probe.correspondence_for(dark).num_inliers == 0
        reply = stream.good()
        assert reply.reference_id == kf.id
        assert keyframe_ids(probe)[0] == kf.id and stats(node)["failed"] == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_frames_flow_stops_cleanly(signum):
    """Before: '[ERROR] processing failed: RCLError: Failed to publish: publisher's context is
    invalid'. Now the worker finishes its frame and stops before the context goes."""
    namespace = f"/sgsig{os.getpid()}_{int(signum)}"
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "superglue_ros.ros.node",
            "--ros-args",
            "-r",
            f"__ns:={namespace}",
            "-p",
            "preset:=orb",
            "-p",
            "reliability:=reliable",
            "-p",
            "debug_image:=always",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = Context()
    rclpy.init(context=context)
    executor = CallbackPoolExecutor(num_threads=2, context=context)
    probe = Probe(context, namespace=namespace)
    executor.add_node(probe)
    import threading

    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        probe.wait_for_node(timeout=60.0)
        stream = Stream(probe)
        stream.send()
        probe.wait_for(lambda: probe.keyframes, 30.0, "the first keyframe")
        for _ in range(10):  # frames keep flowing while the signal arrives
            stream.send()
            time.sleep(0.05)
        probe.wait_for(lambda: len(probe.correspondences) >= 2, 30.0, "odometry")
        for _ in range(5):
            stream.send()
        node.send_signal(signum)
        for _ in range(5):
            stream.send()
            time.sleep(0.02)
        output = node.communicate(timeout=30)[0]
    finally:
        if node.poll() is None:
            node.kill()
        executor.shutdown(timeout_sec=5.0)
        probe.destroy_node()
        rclpy.shutdown(context=context)
    assert node.returncode == 0, output
    assert "shutting down" in output, output
    for bad in ("ERROR", "Traceback", "context is invalid"):
        assert bad not in output, output
    with probe.lock:
        for reply in probe.correspondences[1:]:
            stream.check(reply, min_inliers=30)

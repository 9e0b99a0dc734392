"""superglue-offline over a small image folder and a small rosbag2 (written here with rosbags),
plus the synthetic sequence's own ground truth."""

import json

import cv2
import numpy as np
import pytest

from superglue_ros.frontend.offline import main
from superglue_ros.frontend.synthetic import make_sequence


@pytest.fixture(scope="module")
def sequence():
    return make_sequence(num_frames=80)


def test_synthetic_sequence_ground_truth(sequence):
    assert len(sequence) == 80 and sequence.frame(0).shape == (480, 640, 3)
    np.testing.assert_allclose(sequence.homography(3, 3), np.eye(3), atol=1e-9)
    H = sequence.homography(0, 5) @ sequence.homography(5, 0)
    np.testing.assert_allclose(H / H[2, 2], np.eye(3), atol=1e-9)
    # the exact homography maps image content: warping frame 4 onto frame 0 reproduces it
    f0 = sequence.frame(0).astype(np.float32)
    warped = cv2.warpPerspective(sequence.frame(4), sequence.homography(4, 0), (640, 480)).astype(
        np.float32
    )
    valid = (
        cv2.warpPerspective(np.ones((480, 640), np.uint8), sequence.homography(4, 0), (640, 480))
        > 0
    )
    valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5))) > 0
    assert valid.mean() > 0.5
    assert np.median(np.abs(f0 - warped)[valid]) < 6  # noise + brightness drift only
    # the loop revisits its start and goes far away in between
    lap = int(np.argmin(np.abs(sequence.t - 1.0)))
    assert sequence.overlap(0, lap) > 0.9 and sequence.overlap(0, 35) == 0.0
    assert np.array_equal(sequence.frame(7), sequence.frame(7))  # deterministic
    assert np.all(np.diff(sequence.stamps_ns) == 100_000_000)
    with pytest.raises(IndexError):
        sequence.frame(80)


def test_offline_folder_writes_outputs(tmp_path, sequence):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(0, 24, 2):
        cv2.imwrite(str(folder / f"{i:04d}.png"), sequence.frame(i))
    (folder / "9999_broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    rc = main(
        [
            str(folder),
            "-o",
            str(out),
            "--preset",
            "orb",
            "--quiet",
            "--set",
            "max_frames=4",
            "--set",
            "geometric_model=homography",
            "--intrinsics",
            "500,500,319.5,239.5",
        ]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["frames"]) == 12 and len(summary["skipped"]) == 1
    assert "9999_broken.png" in summary["skipped"][0]["reason"]
    assert summary["frames"][0]["is_keyframe"] and summary["keyframes"] >= 3  # max_frames=4
    corrs = json.loads((out / "correspondences.json").read_text())
    assert len(corrs) == 11 and all(c["kind"] == "odometry" for c in corrs)
    c = corrs[0]  # frame 2 of the sequence vs keyframe 0, exact GT
    q, r, inl = np.array(c["query_points"]), np.array(c["reference_points"]), np.array(c["inliers"])
    assert c["model_type"] == "homography" and inl.sum() > 100
    err = np.linalg.norm(sequence.warp_points(0, 2, r[inl]) - q[inl], axis=1)
    assert np.mean(err < 3) >= 0.9
    for name in ("matches_per_frame.png", "inliers_over_time.png"):
        assert cv2.imread(str(out / name)) is not None


def _write_bag(path, sequence, frames):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image, Header, Time = (
        ts.types[n]
        for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
    )
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    with Writer(path, version=9) as writer:
        conn = writer.add_connection("/cam/image_raw", Image.__msgtype__, typestore=ts)
        cconn = writer.add_connection("/cam/image/compressed", Compressed.__msgtype__, typestore=ts)
        for k, i in enumerate(frames):
            stamp = int(sequence.stamps_ns[i])
            header = Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam")
            rgb = np.ascontiguousarray(sequence.frame(i)[:, :, ::-1])
            padded = np.zeros((480, 640 * 3 + 8), np.uint8)  # row padding: step > width * 3
            padded[:, : 640 * 3] = rgb.reshape(480, -1)
            if k == 3:  # a corrupt message: wrong data size
                padded = padded[:-1]
            msg = Image(
                header=header,
                height=480,
                width=640,
                encoding="rgb8",
                is_bigendian=0,
                step=640 * 3 + 8,
                data=padded.reshape(-1),
            )
            writer.write(conn, stamp, ts.serialize_cdr(msg, Image.__msgtype__))
            ok, jpg = cv2.imencode(".jpg", sequence.frame(i), [cv2.IMWRITE_JPEG_QUALITY, 95])
            cmsg = Compressed(header=header, format="jpeg", data=jpg.reshape(-1))
            writer.write(cconn, stamp, ts.serialize_cdr(cmsg, Compressed.__msgtype__))


def test_offline_rosbag_image_and_compressed(tmp_path, sequence):
    bag = tmp_path / "bag"
    _write_bag(bag, sequence, list(range(0, 16, 2)))
    for topic, fmt in (("/cam/image_raw", "npz"), ("/cam/image/compressed", "json")):
        out = tmp_path / f"out_{fmt}"
        rc = main(
            [
                str(bag),
                "-o",
                str(out),
                "--preset",
                "orb",
                "--topic",
                topic,
                "--format",
                fmt,
                "--quiet",
                "--no-plots",
                "--set",
                "geometric_model=homography",
            ]
        )
        assert rc == 0
        summary = json.loads((out / "summary.json").read_text())
        expected_frames = 7 if topic.endswith("raw") else 8
        assert len(summary["frames"]) == expected_frames
        assert summary["frames"][1]["stamp_ns"] == int(sequence.stamps_ns[2])  # header stamps
        if fmt == "npz":
            assert "data size" in summary["skipped"][0]["reason"]
            data = np.load(out / "correspondences.npz")
            meta = json.loads(str(data["000000_meta"]))
            q, r = data["000000_query_points"], data["000000_reference_points"]
            inl = data["000000_inliers"]
            assert meta["kind"] == "odometry" and meta["reference_id"] == 0
            err = np.linalg.norm(sequence.warp_points(0, 2, r[inl]) - q[inl], axis=1)
            assert inl.sum() > 100 and np.mean(err < 3) >= 0.9
    assert (
        main(
            [str(bag), "-o", str(tmp_path / "x"), "--preset", "orb", "--topic", "/nope", "--quiet"]
        )
        == 2
    )
    assert main([str(tmp_path / "missing"), "-o", str(tmp_path / "y"), "--quiet"]) == 2

"""One YAML, one model: the same ROS params file builds the same extractor and matcher (names,
options, weight files, device) in superglue_node and in superglue-offline."""

import json
import pathlib
import shutil

import cv2
import pytest
from skimage import data

import superglue_ros
from superglue_ros.features import describe_components
from superglue_ros.frontend import offline
from superglue_ros.ros.node import StartupError, SuperGlueNode

WEIGHTS = pathlib.Path(superglue_ros.__file__).parent / "weights"


def test_params_file_gives_node_and_offline_the_same_models(tmp_path, ros_context):
    if not all((WEIGHTS / f"{k}.pth").is_file() for k in ("superpoint", "superglue")):
        pytest.skip("trained weights not shipped yet")
    weights = {}
    for kind in ("superpoint", "superglue"):  # copies: the paths must come from the file
        weights[kind] = tmp_path / f"{kind}_copy.pth"
        shutil.copy(WEIGHTS / f"{kind}.pth", weights[kind])
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**/superglue_node:\n  ros__parameters:\n"
        '    preset: "superglue"\n    runtime: "reference"\n    inference_precision: "fp32"\n'
        f'    superpoint_weights: "{weights["superpoint"]}"\n'
        f'    superglue_weights: "{weights["superglue"]}"\n'
        '    max_keypoints: 256\n    device: "cpu"\n    debug_image: "never"\n'
        "    min_inliers: 9\n"
    )
    node = SuperGlueNode(context=ros_context, cli_args=["--ros-args", "--params-file", str(params)])
    try:
        from_node = describe_components(node.extractor, node.matcher)
    finally:
        node.destroy_node()
    assert from_node["superpoint_weights"] == str(weights["superpoint"])
    assert from_node["superglue_weights"] == str(weights["superglue"])
    assert from_node["extractor_conf"]["max_keypoints"] == 256
    assert from_node["extractor_conf"]["runtime"] == "reference"

    folder = tmp_path / "frames"
    folder.mkdir()
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), photo[100:280, 100 + 6 * i : 340 + 6 * i])
    out = tmp_path / "out"
    assert (
        offline.main(
            [str(folder), "-o", str(out), "--config", str(params), "--quiet", "--no-plots"]
        )
        == 0
    )
    from_offline = json.loads((out / "summary.json").read_text())["components"]
    assert from_offline == json.loads(json.dumps(from_node))


def test_unusable_weights_in_params_are_a_clear_startup_error(tmp_path, ros_context):
    params = tmp_path / "params.yaml"
    params.write_text(
        '/**/superglue_node:\n  ros__parameters:\n    preset: "orb"\n'
        '    extractor: "orb"\n    matcher: "superglue"\n    device: "cpu"\n'
        '    superglue_weights: "/no/such/file.pth"\n'
    )
    with pytest.raises(StartupError, match="cannot build orb\\+superglue: "):
        SuperGlueNode(context=ros_context, cli_args=["--ros-args", "--params-file", str(params)])

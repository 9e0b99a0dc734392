"""build_components: the one way from a flat config to (extractor, matcher), used by every
entry point; unknown options are refused with a message naming them."""

import json
import logging
import pathlib
import shutil

import cv2
import numpy as np
import pytest
import torch
from skimage import data

import superglue_ros
from superglue_ros.cli import match as match_cli
from superglue_ros.features import (
    COMPONENT_DEFAULTS,
    build_components,
    component_names,
    describe_components,
)
from superglue_ros.frontend import offline

torch.set_num_threads(2)
WEIGHTS = pathlib.Path(superglue_ros.__file__).parent / "weights"


def needs_weights():
    if not all((WEIGHTS / f"{k}.pth").is_file() for k in ("superpoint", "superglue")):
        pytest.skip("trained weights not shipped yet")


@pytest.mark.parametrize(
    "conf,message",
    [
        (dict(presett="orb"), r"components: unknown option\(s\) \['presett'\]; known: \["),
        (dict(preset="akaze"), "unknown preset 'akaze'"),
        (dict(preset="orb", extractor="surf"), "unknown extractor 'surf'"),
        (dict(preset="orb", matcher="flann"), "unknown matcher 'flann'"),
        (dict(inference_precision="int4"), "unknown inference_precision 'int4'"),
        (dict(runtime="turbo"), "unknown runtime 'turbo'"),
        (
            dict(preset="orb", extractor_options=dict(nfeatures=10)),
            r"orb: unknown option\(s\) \['nfeatures'\]",
        ),
        (dict(preset="orb", matcher_options=[1]), "matcher_options must be a mapping"),
    ],
)
def test_unknown_options_are_refused(conf, message):
    with pytest.raises(ValueError, match=message):
        build_components(dict(conf, device="cpu"))


def test_flat_options_reach_the_right_components(tmp_path):
    """runtime/precision/weights go to the learned components only; max_keypoints to any
    extractor; per-component option dicts win over the flat options."""
    extractor, matcher = build_components(
        dict(
            preset="orb",
            runtime="reference",
            inference_precision="fp32",
            max_keypoints=77,
            device="cpu",
        )
    )
    assert (extractor.name, matcher.name) == ("orb", "ratio-hamming")
    assert extractor.conf["max_keypoints"] == 77 and "runtime" not in extractor.conf
    extractor, matcher = build_components(
        dict(
            preset="sift",
            matcher="mnn",
            max_keypoints=100,
            device="cpu",
            extractor_options=dict(max_keypoints=50, root=False),
            matcher_options=dict(max_distance=0.7),
        )
    )
    assert (extractor.name, matcher.name) == ("sift", "mnn")
    assert extractor.conf["max_keypoints"] == 50 and extractor.conf["root"] is False
    assert matcher.conf == dict(max_distance=0.7)
    assert component_names(dict(preset="superpoint-mnn", matcher="superglue")) == (
        "superpoint",
        "superglue",
    )
    needs_weights()
    weights = tmp_path / "sp_copy.pth"
    shutil.copy(WEIGHTS / "superpoint.pth", weights)
    extractor, matcher = build_components(
        dict(
            preset="superpoint-mnn",
            runtime="reference",
            inference_precision="fp32",
            superpoint_weights=str(weights),
            superglue_weights="/not/used/by/mnn.pth",
            max_keypoints=200,
            device="cpu",
        )
    )
    described = describe_components(extractor, matcher)
    assert described["superpoint_weights"] == str(weights)
    assert described["superglue_weights"] is None
    assert extractor.conf["runtime"] == "reference" and extractor.conf["precision"] == "fp32"
    assert extractor.conf["max_keypoints"] == 200 and "runtime" not in matcher.conf


def textured_folder(folder: pathlib.Path, n: int = 3) -> pathlib.Path:
    """n frames of a camera panning over the astronaut photo (160x120)."""
    folder.mkdir()
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), photo[100:220, 100 + 4 * i : 260 + 4 * i])
    return folder


def test_offline_reads_the_model_options_of_a_ros_params_file(tmp_path, caplog):
    """superglue-offline builds the model a ROS params file names (preset, max_keypoints),
    where it used to drop them; a misspelt --set key is refused."""
    caplog.set_level(logging.INFO, logger="superglue-offline")
    folder = textured_folder(tmp_path / "frames")
    params = tmp_path / "params.yaml"
    params.write_text(
        '/**/superglue_node:\n  ros__parameters:\n    preset: "sift"\n'
        '    max_keypoints: 123\n    cameras: [""]\n    min_inliers: 7\n'
    )
    out = tmp_path / "out"
    assert (
        offline.main(
            [
                str(folder),
                "-o",
                str(out),
                "--config",
                str(params),
                "--quiet",
                "--no-plots",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preset"] == "sift"
    assert summary["components"]["extractor"] == "sift"
    assert summary["components"]["matcher"] == "ratio"
    assert summary["components"]["extractor_conf"]["max_keypoints"] == 123
    assert summary["conf"]["min_inliers"] == 7
    assert "ignoring keys that are neither FrontEnd nor model options ['cameras']" in caplog.text
    # flags win over the file, --set over both
    out2 = tmp_path / "out2"
    assert (
        offline.main(
            [
                str(folder),
                "-o",
                str(out2),
                "--config",
                str(params),
                "--quiet",
                "--no-plots",
                "--device",
                "cpu",
                "--preset",
                "orb",
                "--set",
                "max_keypoints=64",
            ]
        )
        == 0
    )
    components = json.loads((out2 / "summary.json").read_text())["components"]
    assert components["extractor"] == "orb" and components["extractor_conf"]["max_keypoints"] == 64
    assert (
        offline.main(
            [str(folder), "-o", str(tmp_path / "o3"), "--quiet", "--set", "max_keypointz=5"]
        )
        == 2
    )
    assert "--set 'max_keypointz=5'" in caplog.text


def test_match_config_goes_through_the_builder(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "preset: sift\nextractor: {name: orb, max_keypoints: 33}\n"
        "matcher: {name: ratio-hamming, ratio: 0.7}\n"
    )
    components = match_cli.load_config(config)
    assert components == dict(
        preset="sift",
        extractor="orb",
        matcher="ratio-hamming",
        extractor_options=dict(max_keypoints=33),
        matcher_options=dict(ratio=0.7),
    )
    extractor, matcher = build_components(dict(components, max_keypoints=1024, device="cpu"))
    assert extractor.conf["max_keypoints"] == 33 and matcher.conf["ratio"] == 0.7
    assert set(COMPONENT_DEFAULTS) >= {
        "preset",
        "runtime",
        "inference_precision",
        "superpoint_weights",
        "superglue_weights",
        "device",
    }
    features = extractor.extract(np.zeros((64, 64), np.uint8))
    assert len(features) == 0

"""Each front-end option is declared once (FrontEnd.options); defaults and validation derive
from the declaration."""

import numpy as np
import pytest

from superglue_ros.features import build_preset
from superglue_ros.frontend.pipeline import FrontEnd
from superglue_ros.frontend.policy import KeyframePolicy
from superglue_ros.options import Option, validate


def test_defaults_are_the_declarations():
    assert FrontEnd.default_conf == {o.name: o.default for o in FrontEnd.options}
    assert KeyframePolicy.default_conf.items() <= FrontEnd.default_conf.items()
    assert len({o.name for o in FrontEnd.options}) == len(FrontEnd.options)
    for option in FrontEnd.options:
        assert option.description and option.problem(option.default) is None, option.name


@pytest.mark.parametrize(
    "conf,message",
    [
        (dict(working_width=9000), r"working_width must be in \[0, 8192\], got 9000"),
        (
            dict(resize_mode="crop"),
            r"resize_mode must be one of \['pixels', 'fit', 'stretch'\], got 'crop'",
        ),
        (dict(loop_geometric_model="affine"), "loop_geometric_model must be one of"),
        (dict(ransac_threshold_px=0.0), r"ransac_threshold_px must be in \[0.01, 100.0\]"),
        (dict(essential_max_iterations=50), "essential_max_iterations must be in"),
        (dict(min_gap_frames=0), "min_gap_frames must be in"),
        (dict(loop_closure="yes"), "loop_closure must be bool, got 'yes'"),
        (dict(max_keyframes=2.5), "max_keyframes must be int, got 2.5"),
        (dict(max_keyframs=2), r"FrontEnd: unknown option\(s\) \['max_keyframs'\]"),
    ],
)
def test_frontend_refuses_what_the_declaration_does_not_allow(conf, message):
    extractor, matcher = build_preset("orb")
    with pytest.raises(ValueError, match=message):
        FrontEnd(extractor, matcher, conf)


def test_accepted_values():
    extractor, matcher = build_preset("orb")
    fe = FrontEnd(
        extractor,
        matcher,
        dict(
            ransac_threshold_px=3,
            working_width=np.int64(320),
            loop_closure=np.bool_(False),
            min_inlier_ratio=1.0,
        ),
    )
    assert fe.conf["ransac_threshold_px"] == 3 and fe.conf["working_width"] == 320
    options = (Option("a", 1, "int"), Option("b", "x", "str", choices=("x", "y")))
    assert validate("thing", options, dict(b="y")) == dict(a=1, b="y")
    with pytest.raises(ValueError, match=r"thing: a must be int, got True; b must be one of"):
        validate("thing", options, dict(a=True, b="z"))

"""The registry: components by name, presets, and ``build_components``, the one way from a
flat config (the node's parameters, a YAML file, command-line options) to (extractor, matcher).

Also the package's public face for features: the containers and interfaces
(``feature_types.py``), the learned wrappers (``learned.py``) and the classical baselines
(``baselines.py``) are importable from here, e.g. ``from superglue_ros.features import
Features, build_preset``.
"""

from __future__ import annotations

from . import baselines
from .devices import resolve_device
from .feature_types import CACHE_KEY, Extractor, Features, Matcher, Matches
from .images import to_gray
from .learned import SuperGlueMatcher, SuperPointExtractor
from .models.backends import PRECISIONS
from .options import check_options

__all__ = [
    "CACHE_KEY",
    "COMPONENT_DEFAULTS",
    "Extractor",
    "Features",
    "Matcher",
    "Matches",
    "PRECISIONS",
    "PRESETS",
    "SuperGlueMatcher",
    "SuperPointExtractor",
    "build_components",
    "build_extractor",
    "build_matcher",
    "build_preset",
    "check_options",
    "component_names",
    "describe_components",
    "resolve_device",
    "runtime_of",
    "to_gray",
]

EXTRACTORS = {
    "superpoint": SuperPointExtractor,
    "orb": baselines.ORBExtractor,
    "sift": baselines.SIFTExtractor,
}
MATCHERS = {
    "superglue": SuperGlueMatcher,
    "mnn": baselines.MutualNearestNeighborMatcher,
    "ratio": baselines.RatioMatcher,
    "ratio-hamming": baselines.HammingRatioMatcher,
}


def build_extractor(name: str, device="cpu", **conf) -> Extractor:
    """Extractor by name: 'superpoint', 'orb', 'sift'."""
    extractors = EXTRACTORS
    if name not in extractors:
        raise ValueError(f"unknown extractor {name!r}; choose one of {sorted(extractors)}")
    return extractors[name](device=device, **conf)


def build_matcher(name: str, device="cpu", **conf) -> Matcher:
    """Matcher by name: 'superglue', 'mnn', 'ratio' (SIFT), 'ratio-hamming' (ORB)."""
    matchers = MATCHERS
    if name not in matchers:
        raise ValueError(f"unknown matcher {name!r}; choose one of {sorted(matchers)}")
    return matchers[name](device=device, **conf)


PRESETS = {
    "superglue": ("superpoint", "superglue"),
    "superpoint-mnn": ("superpoint", "mnn"),
    "sift": ("sift", "ratio"),
    "orb": ("orb", "ratio-hamming"),
}

# The flat component options: the node's parameters of the same names, the keys a ROS params
# file gives superglue-offline, the command-line options of superglue-eval / superglue-match.
COMPONENT_DEFAULTS = dict(
    preset="superglue",  # extractor + matcher pair of PRESETS
    extractor="",  # extractor name overriding the preset's ('' = the preset's)
    matcher="",  # matcher name overriding the preset's
    runtime="fast",  # learned models: 'fast' | 'reference' (models/backends.py)
    # learned models: 'auto' (the runtime's) | fp32 | bf16 | fp16 | int8 (SuperPoint's backbone;
    # SuperGlue then takes auto's float choice)
    inference_precision="auto",
    superpoint_weights="",  # '' = the shipped file
    superglue_weights="",
    max_keypoints=512,  # any extractor's keypoint budget (-1 = all)
    # SuperGlue's: a match needs this assignment probability both ways (the papers' 0.2)
    match_threshold=0.2,
    device="auto",
)
# per-component options on top of the flat ones (e.g. match_threshold, backend); they win
COMPONENT_OPTION_DICTS = ("extractor_options", "matcher_options")


def component_names(conf: dict) -> tuple[str, str]:
    """(extractor name, matcher name) of a flat component config (preset + overrides)."""
    preset = conf.get("preset") or COMPONENT_DEFAULTS["preset"]
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    extractor_name, matcher_name = PRESETS[preset]
    return conf.get("extractor") or extractor_name, conf.get("matcher") or matcher_name


def build_components(conf: dict) -> tuple[Extractor, Matcher]:
    """The one way from a flat config (keys of COMPONENT_DEFAULTS, plus optional
    `extractor_options` / `matcher_options` dicts) to (extractor, matcher).

    runtime, inference_precision and the weight files go to the learned components only
    (SuperPoint, SuperGlue), match_threshold to SuperGlue; max_keypoints to any extractor.
    Unknown keys, presets, names, runtimes or precisions raise ValueError with the allowed
    values.
    """
    check_options("components", conf, [*COMPONENT_DEFAULTS, *COMPONENT_OPTION_DICTS])
    conf = {**COMPONENT_DEFAULTS, **{k: v for k, v in conf.items() if v is not None}}
    if conf["inference_precision"] not in PRECISIONS:
        raise ValueError(
            f"unknown inference_precision {conf['inference_precision']!r}; "
            f"choose one of {list(PRECISIONS)}"
        )
    extractor_name, matcher_name = component_names(conf)
    device = resolve_device(conf["device"])
    learned = dict(runtime=conf["runtime"])
    if conf["inference_precision"] != "auto":
        learned["precision"] = conf["inference_precision"]
    extractor_conf = dict(max_keypoints=conf["max_keypoints"])
    matcher_conf = {}
    if matcher_name == "superglue":
        matcher_conf["match_threshold"] = conf["match_threshold"]
    for name, learned_name, weights, options in (
        (extractor_name, "superpoint", conf["superpoint_weights"], extractor_conf),
        (matcher_name, "superglue", conf["superglue_weights"], matcher_conf),
    ):
        if name == learned_name:
            options.update(learned)
            if weights:
                options["weights"] = str(weights)
    for key, options in zip(COMPONENT_OPTION_DICTS, (extractor_conf, matcher_conf)):
        extra = conf.get(key) or {}
        if not isinstance(extra, dict):
            raise ValueError(f"{key} must be a mapping of options, got {type(extra).__name__}")
        options.update(extra)
    return (
        build_extractor(extractor_name, device, **extractor_conf),
        build_matcher(matcher_name, device, **matcher_conf),
    )


def describe_components(extractor: Extractor, matcher: Matcher) -> dict:
    """Names, options, device and weight files of built components (logs, summaries, tests)."""

    def weights(component):
        path = getattr(getattr(component, "model", None), "weights_path", None)
        return None if path is None else str(path)

    return dict(
        extractor=extractor.name,
        extractor_conf=dict(extractor.conf),
        matcher=matcher.name,
        matcher_conf=dict(matcher.conf),
        device=str(extractor.device),
        superpoint_weights=weights(extractor),
        superglue_weights=weights(matcher),
    )


def runtime_of(component) -> tuple[str, str]:
    """(backend, precision) a component's network runs with, e.g. ('openvino', 'int8'):
    ('torch', 'fp32') on the reference path, ('opencv', '') for the classical components,
    ('pending', '') before a fast-path model's first call builds its backend. Why: the
    precision is chosen per CPU (backends.resolve_precision), so a user on a CPU without bf16
    or 8-bit dot products can see that it runs fp32 (node diagnostics, benchmark JSON)."""
    model = getattr(component, "model", None)
    if model is None:
        return "opencv", ""
    runner = model.__dict__.get("_runner")
    if runner is not None:
        return runner.name, getattr(runner, "precision", "fp32")  # onnxruntime: fp32 only
    if model.uses_reference_path():
        return "torch", "fp32"
    return "pending", ""


def build_preset(name: str, device="cpu", **conf) -> tuple[Extractor, Matcher]:
    """build_components of a preset, the short form: conf may hold `extractor`/`matcher`
    option dicts; any other key (e.g. max_keypoints) goes to the extractor."""
    conf = dict(conf)
    matcher_conf = dict(conf.pop("matcher", None) or {})
    extractor_conf = {**dict(conf.pop("extractor", None) or {}), **conf}
    return build_components(
        dict(
            preset=name,
            device=device,
            extractor_options=extractor_conf,
            matcher_options=matcher_conf,
        )
    )

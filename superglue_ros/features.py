"""Feature and match containers, the extractor/matcher interfaces and the registry.

Everything that produces or consumes correspondences (the node, ``superglue-match``, the
evaluation toolkit, training validation) talks to these types only, so a classical baseline and
the learned SuperPoint/SuperGlue pair are interchangeable by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .devices import resolve_device
from .images import to_gray
from .options import check_options


@dataclass
class Features:
    """Keypoints of one image.

    keypoints: float32 [N,2] (x, y) pixels of the image given to extract()
    scores: float32 [N]
    descriptors: [N,D] float32 L2-normalised, or uint8 [N,32] for ORB
    image_size: (width, height)
    cache: matcher-private data (e.g. tensors on the compute device) so reference frames are
        not re-uploaded for every match; never part of the public value of the features.
    """
    keypoints: np.ndarray
    scores: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.keypoints = np.asarray(self.keypoints, np.float32).reshape(-1, 2)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.descriptors = np.asarray(self.descriptors)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        n = len(self.keypoints)
        if len(self.scores) != n or len(self.descriptors) != n:
            raise ValueError(f'inconsistent feature counts: {n} keypoints, {len(self.scores)} '
                             f'scores, {len(self.descriptors)} descriptors')

    def __len__(self) -> int:
        return len(self.keypoints)

    def scaled(self, sx: float, sy: float, image_size) -> 'Features':
        """Copy with keypoints mapped to the same image resized by sx = new_width / width,
        sy = new_height / height; image_size is the new (width, height).

        Pixel centres are aligned as cv2.resize does: x' = (x + 0.5) * sx - 0.5. The cache is
        dropped because cached tensors hold the old coordinates.
        """
        scale = np.array([sx, sy], np.float32)
        kpts = (self.keypoints + 0.5) * scale - 0.5
        return Features(kpts, self.scores.copy(), self.descriptors.copy(), tuple(image_size))

    def nbytes(self) -> int:
        """Host memory of the arrays plus tensors in the cache (for bounded keyframe caches)."""
        total = self.keypoints.nbytes + self.scores.nbytes + self.descriptors.nbytes

        def size(value):
            if isinstance(value, torch.Tensor):
                return value.element_size() * value.nelement()
            if isinstance(value, np.ndarray):
                return value.nbytes
            if isinstance(value, dict):
                return sum(size(v) for v in value.values())
            if isinstance(value, (list, tuple)):
                return sum(size(v) for v in value)
            return 0
        return total + size(self.cache)

    @classmethod
    def empty(cls, image_size, descriptor_dim=256, dtype=np.float32) -> 'Features':
        return cls(np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                   np.zeros((0, descriptor_dim), dtype), image_size)


@dataclass
class Matches:
    """Matches from image 0 to image 1.

    matches0: int64 [N0], index into keypoints1 or -1
    scores0: float32 [N0], confidence, 0 where unmatched
    """
    matches0: np.ndarray
    scores0: np.ndarray

    def __post_init__(self):
        self.matches0 = np.asarray(self.matches0, np.int64).reshape(-1)
        self.scores0 = np.asarray(self.scores0, np.float32).reshape(-1)
        if len(self.matches0) != len(self.scores0):
            raise ValueError(f'matches0 has {len(self.matches0)} entries but scores0 '
                             f'{len(self.scores0)}')

    def __len__(self) -> int:
        return int((self.matches0 >= 0).sum())

    def indices(self) -> tuple[np.ndarray, np.ndarray]:
        """(idx0, idx1) int64 [K] of the matched pairs."""
        idx0 = np.flatnonzero(self.matches0 >= 0)
        return idx0, self.matches0[idx0]

    @classmethod
    def none(cls, n0: int) -> 'Matches':
        return cls(np.full(n0, -1, np.int64), np.zeros(n0, np.float32))

    @classmethod
    def from_pairs(cls, n0: int, idx0, idx1, scores) -> 'Matches':
        matches = cls.none(n0)
        matches.matches0[np.asarray(idx0, np.int64)] = np.asarray(idx1, np.int64)
        matches.scores0[np.asarray(idx0, np.int64)] = np.asarray(scores, np.float32)
        return matches


class _Configured:
    """Shared by extractors and matchers: `default_conf` merged with checked overrides, and the
    resolved compute device."""
    name = 'component'
    default_conf: dict = {}

    def __init__(self, device='cpu', **conf):
        check_options(self.name, conf, self.default_conf)
        self.conf = {**self.default_conf, **conf}
        self.device = resolve_device(device)

    def __repr__(self):
        return f'{type(self).__name__}({self.conf})'


class Extractor(_Configured):
    """Turns a uint8 image (HxW gray or HxWx3 BGR) into Features."""
    name = 'extractor'

    def extract(self, image: np.ndarray) -> Features:
        raise NotImplementedError


class Matcher(_Configured):
    """Matches Features of image 0 against Features of image 1 (or many references)."""
    name = 'matcher'

    def match(self, f0: Features, f1: Features) -> Matches:
        raise NotImplementedError

    def match_many(self, f0: Features, refs: list[Features]) -> list[Matches]:
        """Match one query against several references (loop closure). Default: one by one."""
        return [self.match(f0, f1) for f1 in refs]


# ---------------------------------------------------------------------------------------------
# Learned features: SuperPoint + SuperGlue wrappers around superglue_ros.models
# ---------------------------------------------------------------------------------------------

CACHE_KEY = 'torch'  # Features.cache[CACHE_KEY] = dict(device=str, keypoints, scores, descriptors)


def _cached_tensors(features: Features, device: torch.device) -> dict:
    """Tensors of `features` on `device`, uploaded once and kept in features.cache.

    keypoints [N,2], scores [N], descriptors [N,D] float32.
    """
    entry = features.cache.get(CACHE_KEY)
    if entry is None or entry['device'] != str(device):
        entry = dict(
            device=str(device),
            keypoints=torch.from_numpy(features.keypoints).to(device),
            scores=torch.from_numpy(features.scores).to(device),
            descriptors=torch.from_numpy(
                np.ascontiguousarray(features.descriptors, np.float32)).to(device))
        features.cache[CACHE_KEY] = entry
    return entry


# Runtime of the learned models (option 'runtime' of both wrappers): 'fast' (default: OpenVINO
# with bf16 where the CPU has it natively, static shapes, cv2 NMS, cached keyframe encodings,
# scaling Sinkhorn; fp16 autocast on CUDA) or 'reference' (eager fp32 torch as in the papers).
# Options 'backend' / 'precision' override the runtime's choice ('torch' | 'openvino' |
# 'onnxruntime'; 'auto' | 'fp32' | 'bf16' | 'fp16'). See models/backends.py.


def _runtime_options(conf: dict, which: int) -> dict:
    """Model options of conf['runtime'] (0 = SuperPoint, 1 = SuperGlue) with the overrides."""
    from .models.backends import RUNTIMES
    if conf['runtime'] not in RUNTIMES:
        raise ValueError(f"unknown runtime {conf['runtime']!r}; choose from {sorted(RUNTIMES)}")
    options = dict(RUNTIMES[conf['runtime']][which])
    options.update({k: conf[k] for k in ('backend', 'precision') if conf[k] is not None})
    return options


class SuperPointExtractor(Extractor):
    """SuperPoint keypoints and 256-d descriptors (weights: shipped file or `weights` path)."""
    name = 'superpoint'
    default_conf = dict(max_keypoints=512, keypoint_threshold=0.005, nms_radius=4,
                        remove_borders=4, weights=None, keep_on_device=True, runtime='fast',
                        backend=None, precision=None)

    def __init__(self, device='cpu', model=None, **conf):
        """model: an already built SuperPoint (e.g. during training; its own runtime options
        are kept); else loaded from conf["weights"] or the shipped file. A given model is put in
        eval mode (call .train() again afterwards when training).
        """
        super().__init__(device, **conf)
        model_conf = {k: self.conf[k] for k in
                      ('max_keypoints', 'keypoint_threshold', 'nms_radius', 'remove_borders')}
        model_conf.update(_runtime_options(self.conf, 0))
        if model is None:
            from .models.weights import load_model
            model = load_model('superpoint', self.conf['weights'], conf=model_conf,
                               device=self.device)
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def extract(self, image: np.ndarray) -> Features:
        gray = to_gray(image)
        height, width = gray.shape
        tensor = torch.from_numpy(gray).to(self.device, torch.float32)[None, None] / 255.0
        pred = self.model(tensor)
        kpts, scores, desc = (pred['keypoints'][0], pred['scores'][0], pred['descriptors'][0])
        features = Features(kpts.float().cpu().numpy(), scores.float().cpu().numpy(),
                            desc.float().cpu().numpy(), (width, height))
        if self.conf['keep_on_device']:
            features.cache[CACHE_KEY] = dict(device=str(self.device), keypoints=kpts.float(),
                                             scores=scores.float(), descriptors=desc.float())
        return features


class SuperGlueMatcher(Matcher):
    """SuperGlue attentional matcher; match_many runs one padded batch for N references."""
    name = 'superglue'
    default_conf = dict(weights=None, sinkhorn_iterations=100, match_threshold=0.2,
                        runtime='fast', backend=None, precision=None)

    def __init__(self, device='cpu', model=None, **conf):
        """model: an already built SuperGlue (e.g. during training; its own runtime options
        are kept); else loaded from conf["weights"] or the shipped file. A given model is put in
        eval mode (call .train() again afterwards when training).
        """
        super().__init__(device, **conf)
        model_conf = {k: self.conf[k] for k in ('sinkhorn_iterations', 'match_threshold')}
        model_conf.update(_runtime_options(self.conf, 1))
        if model is None:
            from .models.weights import load_model
            model = load_model('superglue', self.conf['weights'], conf=model_conf,
                               device=self.device)
        self.model = model.to(self.device).eval()

    def match(self, f0: Features, f1: Features) -> Matches:
        return self.match_many(f0, [f1])[0]

    @torch.inference_mode()
    def match_many(self, f0: Features, refs: list[Features]) -> list[Matches]:
        results = [Matches.none(len(f0)) for _ in refs]
        batch = [i for i, f1 in enumerate(refs) if len(f1) > 0]
        if len(f0) == 0 or not batch:
            return results
        q = _cached_tensors(f0, self.device)
        r = [_cached_tensors(refs[i], self.device) for i in batch]
        size_b, max_n = len(batch), max(len(refs[i]) for i in batch)
        dim = q['descriptors'].shape[-1]
        kpts1 = q['keypoints'].new_zeros(size_b, max_n, 2)
        scores1 = q['scores'].new_zeros(size_b, max_n)
        desc1 = q['descriptors'].new_zeros(size_b, max_n, dim)
        mask1 = torch.zeros(size_b, max_n, dtype=torch.bool, device=self.device)
        for b, entry in enumerate(r):
            n = len(entry['keypoints'])
            kpts1[b, :n], scores1[b, :n], desc1[b, :n] = (
                entry['keypoints'], entry['scores'], entry['descriptors'])
            mask1[b, :n] = True
        data = dict(  # side 0 is a batch of one: the model repeats it for the B candidates
            keypoints0=q['keypoints'][None], scores0=q['scores'][None],
            descriptors0=q['descriptors'][None],
            image_size0=torch.tensor([f0.image_size], dtype=torch.float32, device=self.device),
            keypoints1=kpts1, scores1=scores1, descriptors1=desc1,
            image_size1=torch.tensor([refs[i].image_size for i in batch], dtype=torch.float32,
                                     device=self.device),
            mask1=mask1,
            # each side's keypoint encoding is kept in its Features.cache (a keyframe is
            # encoded once, then reused for every later query when the runtime caches)
            cache0=f0.cache, cache1=[refs[i].cache for i in batch])
        pred = self.model(data)
        matches0 = pred['matches0'].cpu().numpy()
        scores0 = pred['matching_scores0'].float().cpu().numpy()
        for b, i in enumerate(batch):
            n = len(refs[i])
            valid = (matches0[b] >= 0) & (matches0[b] < n)  # never point into padding
            results[i] = Matches(np.where(valid, matches0[b], -1),
                                 np.where(valid, scores0[b], 0.0))
        return results


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

def _extractors() -> dict:
    from . import baselines
    return {'superpoint': SuperPointExtractor, 'orb': baselines.ORBExtractor,
            'sift': baselines.SIFTExtractor}


def _matchers() -> dict:
    from . import baselines
    return {'superglue': SuperGlueMatcher, 'mnn': baselines.MutualNearestNeighborMatcher,
            'ratio': baselines.RatioMatcher, 'ratio-hamming': baselines.HammingRatioMatcher}


def build_extractor(name: str, device='cpu', **conf) -> Extractor:
    """Extractor by name: 'superpoint', 'orb', 'sift'."""
    extractors = _extractors()
    if name not in extractors:
        raise ValueError(f'unknown extractor {name!r}; choose one of {sorted(extractors)}')
    return extractors[name](device=device, **conf)


def build_matcher(name: str, device='cpu', **conf) -> Matcher:
    """Matcher by name: 'superglue', 'mnn', 'ratio' (SIFT), 'ratio-hamming' (ORB)."""
    matchers = _matchers()
    if name not in matchers:
        raise ValueError(f'unknown matcher {name!r}; choose one of {sorted(matchers)}')
    return matchers[name](device=device, **conf)


PRESETS = {'superglue': ('superpoint', 'superglue'), 'superpoint-mnn': ('superpoint', 'mnn'),
           'sift': ('sift', 'ratio'), 'orb': ('orb', 'ratio-hamming')}
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')

# The flat component options: the node's parameters of the same names, the keys a ROS params
# file gives superglue-offline, the command-line options of superglue-eval / superglue-match.
COMPONENT_DEFAULTS = dict(
    preset='superglue',         # extractor + matcher pair of PRESETS
    extractor='',               # extractor name overriding the preset's ('' = the preset's)
    matcher='',                 # matcher name overriding the preset's
    runtime='fast',             # learned models: 'fast' | 'reference' (models/backends.py)
    inference_precision='auto',  # learned models: 'auto' (the runtime's) | fp32 | bf16 | fp16
    superpoint_weights='',      # '' = the shipped file
    superglue_weights='',
    max_keypoints=512,          # any extractor's keypoint budget (-1 = all)
    device='auto',
)
# per-component options on top of the flat ones (e.g. match_threshold, backend); they win
COMPONENT_OPTION_DICTS = ('extractor_options', 'matcher_options')


def component_names(conf: dict) -> tuple[str, str]:
    """(extractor name, matcher name) of a flat component config (preset + overrides)."""
    preset = conf.get('preset') or COMPONENT_DEFAULTS['preset']
    if preset not in PRESETS:
        raise ValueError(f'unknown preset {preset!r}; choose one of {sorted(PRESETS)}')
    extractor_name, matcher_name = PRESETS[preset]
    return conf.get('extractor') or extractor_name, conf.get('matcher') or matcher_name


def build_components(conf: dict) -> tuple[Extractor, Matcher]:
    """The one way from a flat config (keys of COMPONENT_DEFAULTS, plus optional
    `extractor_options` / `matcher_options` dicts) to (extractor, matcher).

    runtime, inference_precision and the weight files go to the learned components only
    (SuperPoint, SuperGlue); max_keypoints to any extractor. Unknown keys, presets, names,
    runtimes or precisions raise ValueError with the allowed values.
    """
    check_options('components', conf, [*COMPONENT_DEFAULTS, *COMPONENT_OPTION_DICTS])
    conf = {**COMPONENT_DEFAULTS, **{k: v for k, v in conf.items() if v is not None}}
    if conf['inference_precision'] not in PRECISIONS:
        raise ValueError(f"unknown inference_precision {conf['inference_precision']!r}; "
                         f'choose one of {list(PRECISIONS)}')
    extractor_name, matcher_name = component_names(conf)
    device = resolve_device(conf['device'])
    learned = dict(runtime=conf['runtime'])
    if conf['inference_precision'] != 'auto':
        learned['precision'] = conf['inference_precision']
    extractor_conf = dict(max_keypoints=conf['max_keypoints'])
    matcher_conf = {}
    for name, learned_name, weights, options in (
            (extractor_name, 'superpoint', conf['superpoint_weights'], extractor_conf),
            (matcher_name, 'superglue', conf['superglue_weights'], matcher_conf)):
        if name == learned_name:
            options.update(learned)
            if weights:
                options['weights'] = str(weights)
    for key, options in zip(COMPONENT_OPTION_DICTS, (extractor_conf, matcher_conf)):
        extra = conf.get(key) or {}
        if not isinstance(extra, dict):
            raise ValueError(f'{key} must be a mapping of options, got {type(extra).__name__}')
        options.update(extra)
    return (build_extractor(extractor_name, device, **extractor_conf),
            build_matcher(matcher_name, device, **matcher_conf))


def describe_components(extractor: Extractor, matcher: Matcher) -> dict:
    """Names, options, device and weight files of built components (logs, summaries, tests)."""
    def weights(component):
        path = getattr(getattr(component, 'model', None), 'weights_path', None)
        return None if path is None else str(path)
    return dict(extractor=extractor.name, extractor_conf=dict(extractor.conf),
                matcher=matcher.name, matcher_conf=dict(matcher.conf),
                device=str(extractor.device), superpoint_weights=weights(extractor),
                superglue_weights=weights(matcher))


def build_preset(name: str, device='cpu', **conf) -> tuple[Extractor, Matcher]:
    """build_components of a preset, the short form: conf may hold `extractor`/`matcher`
    option dicts; any other key (e.g. max_keypoints) goes to the extractor."""
    conf = dict(conf)
    matcher_conf = dict(conf.pop('matcher', None) or {})
    extractor_conf = {**dict(conf.pop('extractor', None) or {}), **conf}
    return build_components(dict(preset=name, device=device, extractor_options=extractor_conf,
                                 matcher_options=matcher_conf))

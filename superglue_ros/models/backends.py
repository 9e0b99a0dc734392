"""Inference backends for the dense parts of the networks (the real-time fast path).

Why: on a 2-core CPU the eager fp32 torch networks cost ~1 s per VGA frame. The heavy,
shape-regular parts (SuperPoint's convolutional backbone, SuperGlue's attentional GNN) run much
faster under OpenVINO or ONNX Runtime, and in bf16 where the CPU has native bf16 instructions
(AVX512-BF16 / AMX), SuperPoint's backbone in int8 where its weights have an int8 variant
(quantization.py). Everything data-dependent (NMS, top-k, sampling, Sinkhorn, match
extraction) stays in torch/OpenCV, and Sinkhorn always runs in fp32 torch.

A runner wraps one ``nn.Module`` taking and returning tensors. ``build_runner`` returns the
requested backend or, when it is missing or fails to convert/compile, the torch runner with one
log line. Converted OpenVINO models are cached on disk (keyed by weights + config + code) so a
restart does not pay the conversion again.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import logging
import os
import pathlib
import platform
import warnings

import numpy as np
import torch
from torch import nn

LOG = logging.getLogger("superglue_ros.models.backends")

BACKENDS = ("torch", "openvino", "onnxruntime")
# int8: SuperPoint's backbone only, from a weights file with an int8 entry (quantization.py)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")

# Reference mode: what the papers' reference scripts do (eager fp32 torch, standard configs,
# torch max-pool NMS, no caching). Fast mode: the measured real-time choices (see benchmark.py).
REFERENCE_SUPERPOINT = dict(
    backend="torch", precision="fp32", nms="torch", channels_last=False, small_op_threads=None
)
REFERENCE_SUPERGLUE = dict(
    backend="torch", precision="fp32", cache_keyframes=False, sinkhorn="log", small_op_threads=None
)
FAST_SUPERPOINT = dict(
    backend="openvino",
    precision="auto",
    nms="cv2",
    channels_last=True,
    small_op_threads=1,
    backend_threads=None,
    static_shapes=True,
)
# GNN threads: the backend's default (torch's thread count, 2 here). One thread measured
# better while loop jobs ran beside odometry (74 vs 84 ms quiet; ~400 ms with two under load);
# since they take turns (frontend/model_lock.py) two measured better: GNN 57 -> 40 ms quiet in
# superglue-benchmark, node at 30 Hz VGA 3.67 -> 4.05 Hz processed (ABBA runs), and with one
# core taken by another process the front-end VO path was no slower (160-181 vs 173-256 ms).
FAST_SUPERGLUE = dict(
    backend="openvino",
    precision="auto",
    cache_keyframes=True,
    sinkhorn="scaling",
    # stop once an iteration moves the plan < 1% (relative): on 100 bsds500_test homography
    # pairs (p50 30 iterations) and 118 KITTI 07 pairs (p50 80) every match equalled 100's
    sinkhorn_tolerance=1e-2,
    small_op_threads=1,
    backend_threads=None,
    static_shapes=True,
)
# runtime name -> (SuperPoint options, SuperGlue options); features.py and the node select by name
RUNTIMES = {
    "fast": (FAST_SUPERPOINT, FAST_SUPERGLUE),
    "reference": (REFERENCE_SUPERPOINT, REFERENCE_SUPERGLUE),
}


@contextlib.contextmanager
def limited_threads(num: int | None):
    """Run torch ops with at most ``num`` intra-op threads, then restore (None = unchanged).

    Why: the decoding/Sinkhorn ops are small; on a shared 2-core CPU two OpenMP threads
    wait on each other at every op, and 100 Sinkhorn iterations measured 2 s with 2 threads vs
    60-90 ms with 1 under load. The setting is process-wide for the duration of the block."""
    if not num:
        yield
        return
    previous = torch.get_num_threads()
    if previous <= num:
        yield
        return
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty set where unavailable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 math natively (AVX512-BF16 or AMX-BF16).

    Elsewhere bf16 is emulated and both slower and less accurate than fp32."""
    flags = cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return "AMX" in torch.backends.cpu.get_cpu_capability().upper()


# 8-bit dot-product instructions: what makes an int8 convolution faster than an fp32 one
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_has_int8_dot() -> bool:
    """True when the CPU has 8-bit dot products (AVX512-VNNI, AVX-VNNI or AMX-INT8), or when
    its flags cannot be read.

    Why: without them OpenVINO's int8 backbone is no faster than fp32 and still costs its
    accuracy (AMD EPYC Zen 1, AVX2 only, 2 cores, VGA: 722 ms int8 against 718 ms fp32;
    Intel with AMX: 55 against 91 ms bf16)."""
    flags = cpu_flags()
    return bool(INT8_DOT_FLAGS & flags) if flags else True


def resolve_precision(precision: str, device, int8: bool = False) -> str:
    """'auto' -> fp16 on CUDA; on CPU int8 where the model can run it (``int8``: SuperPoint
    with an int8 variant on OpenVINO) and the CPU has 8-bit dot products
    (``cpu_has_int8_dot``), else bf16 on CPUs with native bf16, else fp32.

    An explicit 'int8' the model cannot run, or bf16 on a CPU without it, logs one line and
    takes auto's float choice; an explicit 'int8' on a CPU without 8-bit dot products runs
    (it is what was asked for)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    device = torch.device(device)
    if precision == "int8":
        if int8 and device.type == "cpu":
            return "int8"
        LOG.warning(
            "int8 runs SuperPoint's backbone only, from a weights file with an int8 entry "
            "(superglue-quantize-superpoint), on the OpenVINO CPU backend; using a float precision"
        )
        precision = "auto"
    if precision != "auto":
        if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            LOG.warning("bf16 requested but this CPU has no native bf16: using fp32")
            return "fp32"
        return precision
    if device.type == "cuda":
        return "fp16"
    if int8 and cpu_has_int8_dot():
        return "int8"
    return "bf16" if cpu_has_native_bf16() else "fp32"


class BackendUnavailable(RuntimeError):
    """The requested backend is not installed or could not convert/compile the model."""


class TorchRunner:
    """Eager torch, optionally under autocast (bf16 on CPU, fp16 on CUDA) and channels_last."""

    name = "torch"

    def __init__(self, module: nn.Module, precision: str = "fp32", channels_last: bool = False):
        self.module = module
        self.precision = precision
        self.channels_last = channels_last
        if channels_last:
            module.to(memory_format=torch.channels_last)

    def autocast(self, device_type: str):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=dtype)

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.channels_last:
            inputs = tuple(
                x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
                for x in inputs
            )
        with torch.inference_mode(), self.autocast(inputs[0].device.type):
            out = self.module(*inputs)
        out = out if isinstance(out, tuple) else (out,)
        return tuple(o.float().contiguous() for o in out)


def _cache_dir() -> pathlib.Path:
    root = os.environ.get("SUPERGLUE_ROS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "superglue_ros"
    )
    return pathlib.Path(root)


# configuration keys that change the traced graph (the others act outside it or at compile time)
ARCHITECTURE_KEYS = {"descriptor_dim", "keypoint_encoder", "gnn_layers", "num_heads"}


def model_fingerprint(module: nn.Module, extra: str = "") -> str:
    """Hash of weights, configuration and the module's source code (cache key)."""
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    for cls in type(module).__mro__:
        if cls.__module__.startswith("superglue_ros"):
            with contextlib.suppress(OSError, TypeError):
                h.update(inspect.getsource(inspect.getmodule(cls)).encode())
    conf = (
        getattr(module, "conf", None) or getattr(getattr(module, "model", None), "conf", None) or {}
    )
    h.update(repr(sorted((k, repr(v)) for k, v in conf.items() if k in ARCHITECTURE_KEYS)).encode())
    h.update(extra.encode())
    return h.hexdigest()[:20]


def export_onnx(
    module: nn.Module,
    example_inputs: tuple,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict,
) -> bytes:
    """ONNX bytes of ``module`` (TorchScript exporter: measured ~3x faster to convert than
    OpenVINO's own torch frontend here)."""
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            example_inputs,
            buf,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=17,
            dynamo=False,
        )
    return buf.getvalue()


class OpenVINORunner:
    """OpenVINO CPU inference of a traced module; bf16 via INFERENCE_PRECISION_HINT."""

    name = "openvino"
    # Compiled once per input shape when static_shapes (measured here, 2 cores, bf16: SuperPoint
    # backbone at 640x480 120 ms static vs 161 ms dynamic; SuperGlue 3+3 GNN at 512x512 74 vs
    # 110 ms). A node sees few shapes (fixed working size, padded keypoint buckets).
    MAX_STATIC_SHAPES = 8

    def __init__(
        self,
        module: nn.Module,
        example_inputs: tuple,
        input_names: list[str],
        output_names: list[str],
        dynamic_axes: dict,
        precision: str = "fp32",
        threads: int | None = None,
        tag: str = "model",
        static_shapes: bool = False,
    ):
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailable(f"openvino is not installed ({exc})") from exc
        self.precision = precision
        self.static_shapes = static_shapes
        core = ov.Core()
        key = model_fingerprint(module, repr(dynamic_axes) + ov.__version__ + tag)
        xml = _cache_dir() / f"{tag}-{key}.xml"
        try:
            if xml.is_file():
                ov_model = core.read_model(str(xml))
            else:
                onnx_bytes = export_onnx(
                    module, example_inputs, input_names, output_names, dynamic_axes
                )
                ov_model = ov.convert_model(io.BytesIO(onnx_bytes))
                with contextlib.suppress(OSError):
                    xml.parent.mkdir(parents=True, exist_ok=True)
                    tmp = xml.with_name(xml.stem + f".tmp{os.getpid()}.xml")
                    ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
                    os.replace(tmp, xml)
                    os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
            # int8: the graph's quantize/dequantize pairs make the convolutions int8; what is
            # left (normalisation, outputs) runs in bf16 where the CPU has it
            float_precision = precision
            if precision == "int8":
                float_precision = "bf16" if cpu_has_native_bf16() else "fp32"
            config = {
                "INFERENCE_PRECISION_HINT": {"bf16": "bf16", "fp16": "f16"}.get(
                    float_precision, "f32"
                ),
                "PERFORMANCE_HINT": "LATENCY",
            }
            threads = threads or torch.get_num_threads()
            config["INFERENCE_NUM_THREADS"] = int(threads)
            # no pinning: with one thread each, two models called from two threads (the
            # node's extraction and odometry threads) were pinned to the same core and each
            # ran half as fast (measured: backbone 29 -> 61 ms, GNN 23 -> 43 ms); unpinned, both
            # kept their speed
            config["ENABLE_CPU_PINNING"] = False
            self._core, self._model, self._config, self._tag = core, ov_model, config, tag
            self._compiled: dict = {}  # input shapes -> (compiled model, infer request)
            self._compile(tuple(tuple(x.shape) for x in example_inputs))
        except Exception as exc:
            raise BackendUnavailable(f"openvino could not convert/compile {tag}: {exc}") from exc

    def _compile(self, shapes: tuple) -> tuple:
        """Compiled model + infer request for these input shapes (static_shapes) or for all."""
        key = shapes if self.static_shapes else None
        entry = self._compiled.pop(key, None)
        if entry is not None:
            self._compiled[key] = entry  # most recently used last: the first is evicted
        else:
            model = self._model
            if self.static_shapes:
                model = model.clone()
                model.reshape(
                    {port.any_name: list(shape) for port, shape in zip(model.inputs, shapes)}
                )
                if len(self._compiled) >= self.MAX_STATIC_SHAPES:  # forget the least recent
                    self._compiled.pop(next(iter(self._compiled)))
                LOG.debug("%s: compiling for input shapes %s", self._tag, shapes)
            compiled = self._core.compile_model(model, "CPU", self._config)
            entry = self._compiled[key] = (compiled, compiled.create_infer_request())
        return entry

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        arrays = [np.ascontiguousarray(x.detach().cpu().numpy()) for x in inputs]
        compiled, request = self._compile(tuple(a.shape for a in arrays))
        # the inputs are read in place (they outlive this synchronous call); the outputs come
        # back as fresh arrays owned by the caller, so they need no second copy (a VGA frame's
        # descriptor and detector maps: about 0.7 ms)
        result = request.infer(arrays, share_inputs=True)
        return tuple(
            torch.from_numpy(np.asarray(result[out], dtype=np.float32)) for out in compiled.outputs
        )


class ONNXRuntimeRunner:
    """ONNX Runtime CPU inference of a module exported with torch.onnx (fp32)."""

    name = "onnxruntime"

    def __init__(
        self,
        module: nn.Module,
        example_inputs: tuple,
        input_names: list[str],
        dynamic_axes: dict,
        output_names: list[str],
        threads: int | None = None,
        tag: str = "model",
    ):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime is not installed ({exc})") from exc
        try:
            onnx_bytes = export_onnx(
                module, example_inputs, input_names, output_names, dynamic_axes
            )
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = int(threads or torch.get_num_threads())
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.session = ort.InferenceSession(
                onnx_bytes, opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise BackendUnavailable(f"onnxruntime could not export/load {tag}: {exc}") from exc
        self.input_names = input_names
        self.precision = "fp32"

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = {n: x.detach().cpu().numpy() for n, x in zip(self.input_names, inputs)}
        return tuple(torch.from_numpy(o) for o in self.session.run(None, feed))


def build_runner(
    backend: str,
    module: nn.Module,
    device,
    precision: str,
    example_inputs: tuple,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict,
    channels_last: bool = False,
    tag: str = "model",
    threads: int | None = None,
    static_shapes: bool = False,
    int8: bool = False,
):
    """The requested runner, or the torch runner (one log line) if that backend is unusable.

    OpenVINO/ONNX Runtime are CPU backends: on CUDA the torch runner (fp16 autocast) is used.
    ``int8``: the module is fake-quantised (models/quantization.py) and precision 'int8' keeps
    it so; OpenVINO runs it with int8 kernels, the torch fallback computes the same graph in
    float (slow, same results)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    device = torch.device(device)
    precision = resolve_precision(precision, device, int8=int8)
    if backend != "torch" and device.type != "cpu":
        backend = "torch"
    if backend == "openvino":
        try:
            return OpenVINORunner(
                module,
                example_inputs,
                input_names,
                output_names,
                dynamic_axes,
                precision,
                threads=threads,
                tag=tag,
                static_shapes=static_shapes,
            )
        except BackendUnavailable as exc:
            LOG.warning("%s: %s; falling back to torch", tag, exc)
    elif backend == "onnxruntime":
        try:
            if precision != "fp32":
                LOG.info("%s: onnxruntime runs fp32 (no bf16 CPU kernels)", tag)
            return ONNXRuntimeRunner(
                module,
                example_inputs,
                input_names,
                dynamic_axes,
                output_names,
                threads=threads,
                tag=tag,
            )
        except BackendUnavailable as exc:
            LOG.warning("%s: %s; falling back to torch", tag, exc)
    return TorchRunner(module, precision, channels_last)


def machine_description() -> dict:
    """What the benchmark ran on."""
    flags = cpu_flags()
    model = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return dict(
        cpu=model or platform.processor(),
        logical_cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        native_bf16=cpu_has_native_bf16(),
        bf16_flags=sorted({"avx512_bf16", "amx_bf16", "amx_tile"} & flags),
        int8_dot=cpu_has_int8_dot(),
        int8_flags=sorted(INT8_DOT_FLAGS & flags),
        torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
    )

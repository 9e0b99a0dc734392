"""The one compute-device resolver of the package (components, weights loading, benchmark)."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Map 'auto' (or None/'') to CUDA when available, else CPU; pass explicit devices through.

    Asking for 'cuda' on a machine without it raises a clear error instead of failing later.
    """
    if isinstance(device, torch.device):
        return device
    device = str(device or "auto").lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but CUDA is not available (use 'cpu' or 'auto')"
        )
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(
            f"unknown device {device!r} (expected 'auto', 'cpu' or 'cuda[:N]')"
        ) from error

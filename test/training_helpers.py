"""Shared by the trainer tests: one torch thread, and folders of photos shipped with scikit-image."""

import pathlib

import cv2
import pytest
import torch
from skimage import data as skdata


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids OpenMP barrier stalls on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_photos(folder: pathlib.Path, names) -> pathlib.Path:
    """scikit-image photos `names` as BGR/gray PNG files in `folder`."""
    for name in names:
        img = getattr(skdata, name)()
        if img.ndim == 3:
            img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{name}.png"), img)
    return folder

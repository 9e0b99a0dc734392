"""Int8 fine-tuning of SuperPoint (training/quantize_superpoint.py): the distillation losses fall
on a fixed batch of real photos, a run checkpoints, resumes and exports a weights file that
keeps the float weights and adds the int8 ones."""

import copy
import csv

import numpy as np
import torch

from superglue_ros.models import quantization
from superglue_ros.models.weights import load_model
from superglue_ros.training import quantize_superpoint as qsp
from superglue_ros.training.common import list_images, read_gray
from training_helpers import one_thread, write_photos  # noqa: F401 (autouse fixture)


def test_fixed_batch_distillation_losses_decrease(tmp_path):
    folder = write_photos(tmp_path, ("astronaut", "camera"))
    images = [read_gray(f) for f in list_images([folder])]
    batch = qsp.crop_batch(np.random.default_rng(0), images, (96, 64), 2, 0)
    teacher = load_model("superpoint").float().eval()
    model = copy.deepcopy(teacher)
    quantization.equalize_ranges(model)
    student = quantization.Int8Backbone(model, quantization.calibrate_scales(model, batch)).train()
    opt = torch.optim.Adam(student.parameters(), lr=1e-4)
    first = None
    for _ in range(6):
        losses = qsp.distillation_losses(student, teacher, batch)
        opt.zero_grad()
        (losses["det"] + 10 * losses["desc"]).backward()
        opt.step()
        first = first or {k: float(v.detach()) for k, v in losses.items()}
    with torch.no_grad():
        last = qsp.distillation_losses(student, teacher, batch)
    assert float(last["desc"]) < 0.8 * first["desc"], (first, last)
    assert float(last["det"]) < first["det"], (first, last)


def test_run_resume_and_export(tmp_path):
    (tmp_path / "photos").mkdir()
    folder = write_photos(tmp_path / "photos", ("astronaut", "camera", "coffee", "chelsea"))
    out = tmp_path / "run"
    common = [
        "--images",
        str(folder),
        "--out",
        str(out),
        "--size",
        "64",
        "64",
        "--batch-size",
        "1",
        "--calibration-images",
        "2",
        "--val-images",
        "2",
        "--val-every",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]
    assert qsp.main([*common, "--steps", "2"]) == 0
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [r["step"] for r in rows] == ["1", "2"] and float(rows[-1]["val_desc_cos"]) < 0.1
    assert qsp.main([*common, "--steps", "3", "--resume"]) == 0
    assert torch.load(out / "checkpoint.pth", weights_only=True)["step"] == 3
    exported = tmp_path / "sp.pth"
    assert (out / "best.pth").is_file()  # the lowest validation loss so far
    assert qsp.main([*common, "--export", str(exported), "--export-from", "last"]) == 0
    model, shipped = load_model("superpoint", exported), load_model("superpoint")
    for key, value in shipped.state_dict().items():  # the float weights are the teacher's
        assert torch.equal(model.state_dict()[key], value)
    variant = model.int8_variant
    assert variant is not None and model.meta["int8"]["steps"] == 3
    assert variant["activation_scales"][0] == quantization.IMAGE_SCALE
    changed = any(
        not torch.equal(variant["state_dict"][k], v) for k, v in shipped.state_dict().items()
    )
    assert changed  # equalised and fine-tuned

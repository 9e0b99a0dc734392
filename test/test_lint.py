"""ruff (configured in ruff.toml) finds nothing in the package, the tests, the launch file and
the scripts: unused imports, undefined names, ambiguous names, over-long lines and syntax errors
fail the suite, and so does code the formatter would change."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKED = ["superglue_ros", "test", "launch", "scripts", "setup.py"]


def test_ruff_check_is_clean():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--output-format",
            "concise",
            *CHECKED,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *CHECKED],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        "run `.venv/bin/ruff format .`:\n" + result.stdout + result.stderr
    )

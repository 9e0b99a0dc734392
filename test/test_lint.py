"""ruff (configured in ruff.toml) finds nothing in the package, the tests, the launch file and
the scripts: unused imports, undefined names, ambiguous names and syntax errors fail the suite."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--output-format', 'concise',
                             'superglue_ros', 'test', 'launch', 'scripts'],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

"""Every console script answers --help with its description and flags, without loading TensorFlow."""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs one entry point as its console script does, then reports whether TensorFlow got imported.
CHILD = """
import importlib, sys
module, function = sys.argv[1].split(":")
sys.argv = [sys.argv[2], "--help"]
try:
    getattr(importlib.import_module(module), function)()
except SystemExit as e:
    code = e.code
else:
    code = None
print("EXIT", code, "TENSORFLOW", "tensorflow" in sys.modules)
"""


def console_scripts() -> list:
    """``[(name, "module:function")]`` from setup.py's entry points."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        return re.findall(r'"(progan-[\w-]+)=([\w.]+:\w+)"', f.read())


def test_every_tool_is_covered():
    assert {"progan-train", "progan-bench", "progan-export", "progan-generate", "progan-metrics",
            "progan-dataset"} <= {name for name, _ in console_scripts()}


@pytest.mark.parametrize("name, entry", console_scripts())
def test_help_explains_the_tool(name, entry):
    proc = subprocess.run([sys.executable, "-c", CHILD, entry, name], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0 and "EXIT 0 TENSORFLOW False" in out, out[-2000:] + proc.stderr[-2000:]
    assert re.match(rf"`*{name}`*: \S", out), out[:300]      # the module docstring: what the tool does
    if "\nCommands:\n" in out:   # progan-dataset: one line per command; `<command> --help` lists its flags
        assert re.search(r"^  create_\w+ +\S", out, re.MULTILINE), out[-2000:]
    else:
        assert "\nFlags:\n" in out and re.search(r"^  --\S+", out, re.MULTILINE), out[-2000:]
    assert "Try --helpfull" not in out

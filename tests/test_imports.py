"""No import cycles in the package, counting imports inside functions (see progan_tf/importcheck.py)."""
import os
import subprocess
import sys
import textwrap

from progan_tf import importcheck

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _package(root, files: dict) -> str:
    pkg = root / "progan_tf"
    for name, source in {"__init__.py": "", **files}.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return str(pkg)


def test_the_package_has_no_import_cycle():
    cycles = importcheck.package_cycles(os.path.join(REPO, "progan_tf"))
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_a_cycle_through_a_function_local_import_is_found(tmp_path):
    pkg = _package(tmp_path, {
        "a.py": "from progan_tf import b\n",
        "b.py": "def f():\n    from progan_tf.c import g\n    return g\n",
        "c.py": "import os\n\ndef g():\n    import progan_tf.a\n",
        "d.py": "from progan_tf import a\n",   # imports into the cycle but is not part of it
    })
    assert importcheck.package_cycles(pkg) == [["progan_tf.a", "progan_tf.b", "progan_tf.c"]]


def test_relative_imports_subpackages_and_the_package_itself(tmp_path):
    pkg = _package(tmp_path, {
        "sub/__init__.py": "from . import x\n",
        "sub/x.py": "from .. import top\nfrom progan_tf import sub\n",   # its own package: no edge
        "top.py": "def f():\n    from .sub.x import name\n",
    })
    graph = importcheck.import_graph(importcheck.package_modules(pkg))
    assert graph["progan_tf.sub"] == {"progan_tf.sub.x"}
    assert graph["progan_tf.sub.x"] == {"progan_tf.top"}
    assert graph["progan_tf.top"] == {"progan_tf.sub.x"}
    assert importcheck.package_cycles(pkg) == [["progan_tf.sub.x", "progan_tf.top"]]


def test_command_line():
    proc = subprocess.run([sys.executable, "-m", "progan_tf.importcheck"], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
    assert proc.returncode == 0 and "0 import cycle(s) in progan_tf" in proc.stdout, proc.stdout + proc.stderr

"""The package's layering (hack/check_layers.py, also run by `make lint`): the real package passes, and the
checker does catch an import against the layering (so a green run means something)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO_ROOT / "operator" / "odoo_operator"


def _checker():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("check_layers", REPO_ROOT / "hack" / "check_layers.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_follows_its_layering() -> None:
    assert _checker().check(PACKAGE_DIR) == []


def test_every_module_belongs_to_a_layer() -> None:
    checker = _checker()
    for path in PACKAGE_DIR.rglob("*.py"):
        rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
        checker.layer(".".join(rel.parts))  # raises for a module nobody placed


def test_imports_against_the_layering_are_reported(tmp_path: Path) -> None:
    copy = tmp_path / "odoo_operator"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    planted = {
        "api/model.py": "from odoo_operator import handlers\n",  # a model importing the entry layer
        "specs/app.py": "from odoo_operator.runtime import registry\n",  # peers: specs | runtime
        "controller/base.py": "from odoo_operator.loop import drain\n",  # controller above the loop
        "kubectl/__init__.py": "from odoo_operator.controller import base\n",  # the plugin reaching into the operator
        "backupjob/__init__.py": "from odoo_operator.specs import app\n",  # the Job's program: api + clients only
        "handlers.py": "from odoo_operator.devtools import dev\n",  # the harness is not shipped
        "pg.py": "from . import kube\n",  # relative imports hide the layer
    }
    for name, line in planted.items():
        with open(copy / name, "a") as handle:
            handle.write(line)
    problems = _checker().check(copy)
    assert len(problems) == len(planted), problems
    for name in planted:
        assert any(problem.startswith(f"odoo_operator/{name}:") for problem in problems), (name, problems)

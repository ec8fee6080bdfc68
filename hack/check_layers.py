"""The package's layering, checked on every `make lint` (and by tests/test_layering.py).

Higher layers may import lower ones, never the reverse; peers in one layer do not import each other:

    entry       main, __main__, handlers, loop                       kopf registrations, the loop engine
    controller  controller/*                                         the reconcilers
    specs | runtime                                                  pure builders | registry, leader, metrics
    api         api/*                                                typed models, labels, conditions
    clients     kube, pg, neutralize, dnscheck, odoorpc, config,    the only I/O
                failpoints

Two programs ship beside the operator and use only api + clients (+ each other one way): backupjob (the
Jobs' program) and kubectl (the plugin, which may use backupjob and specs). devtools (the local harness,
not in the image) may use anything; nothing in the package imports it.

Usage: python hack/check_layers.py [package_dir]; exit status 1 and one line per violation.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "odoo_operator"
RANK = {"clients": 0, "api": 1, "specs": 2, "runtime": 2, "controller": 3, "entry": 4}
ENTRY = {"main", "__main__", "handlers", "loop"}
CLIENTS = {"kube", "pg", "neutralize", "dnscheck", "odoorpc", "config", "failpoints", "__init__"}
# What each of the separate programs may import, besides its own modules.
PROGRAMS = {
    "backupjob": {"clients", "api"},
    "kubectl": {"clients", "api", "specs", "backupjob"},
}


def layer(module: str) -> str:
    """`odoo_operator.controller.base` -> controller; top-level modules by name."""
    parts = module.split(".")[1:] or ["__init__"]
    head = parts[0]
    if head in ("api", "specs", "runtime", "controller", "backupjob", "kubectl", "devtools"):
        return head
    if head in ENTRY:
        return "entry"
    if head in CLIENTS:
        return "clients"
    raise ValueError(f"{module}: not assigned to a layer in hack/check_layers.py")


def imports(path: Path, package_dir: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith(PACKAGE)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith(PACKAGE):
            if node.module == PACKAGE:  # `from odoo_operator import specs, pg`: each name may be a module
                found += [(node.lineno, f"{PACKAGE}.{alias.name}") for alias in node.names
                          if (package_dir / alias.name).is_dir() or (package_dir / f"{alias.name}.py").exists()]
                found.append((node.lineno, PACKAGE))
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "<relative import>"))
    return found


def allowed(src: str, dst: str) -> bool:
    if src == dst:
        return True
    if dst == "devtools":
        return False
    if src == "devtools":
        return True
    if src in PROGRAMS:
        return dst in PROGRAMS[src]
    if dst in PROGRAMS:
        return False
    return RANK[src] > RANK[dst]


def check(package_dir: Path) -> list[str]:
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        src = layer(module)
        for lineno, target in imports(path, package_dir):
            where = f"{path.relative_to(package_dir.parent)}:{lineno}"
            if target == "<relative import>":
                problems.append(f"{where}: relative import (use `from {PACKAGE}.… import …`)")
                continue
            dst = layer(target)
            if not allowed(src, dst):
                problems.append(f"{where}: {src} ({module}) imports {dst} ({target})")
    return problems


def main() -> int:
    package_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "operator" / PACKAGE
    problems = check(package_dir)
    for line in problems:
        print(line)
    if not problems:
        print(f"layers: {sum(1 for _ in package_dir.rglob('*.py'))} modules, no import against the layering")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

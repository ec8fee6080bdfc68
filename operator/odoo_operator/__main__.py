"""`python -m odoo_operator` runs the operator against the current kubeconfig (or in-cluster)."""

from __future__ import annotations

import sys


def main() -> None:
    from kopf.cli import main as kopf_main

    namespace = [arg for arg in sys.argv[1:] if arg.startswith("--namespace") or arg == "-n"]
    args = ["run", "--standalone", "-m", "odoo_operator.main", *sys.argv[1:]]
    if not namespace:
        args.append("--all-namespaces")
    sys.argv = ["kopf", *args]
    kopf_main()


if __name__ == "__main__":
    main()

"""`kubectl-odoo` (and `python -m odoo_operator.kubectl`): parse the command line, run the subcommand, and turn
every failure into one line on stderr and an exit code (0 success, 1 error, 130 interrupted).

Not here: the subcommands (commands.py), the options (parser.py)."""

from __future__ import annotations

import os
import sys
import time

from odoo_operator.api.model import SpecError
from odoo_operator.backupjob.artifacts import BackupError
from odoo_operator.kube import KubeError
from odoo_operator.kubectl.parser import build_parser
from odoo_operator.kubectl.support import PluginError, one_line


def error_message(exc: KubeError) -> str:
    message = one_line(exc.message) or exc.reason or "error"
    if exc.status == 0:
        return f"cannot reach the API server: {message}"
    if exc.status == 401:
        return f"unauthorized (check your credentials): {message}"
    return message


def urllib3_errors() -> tuple[type[Exception], ...]:
    import urllib3

    return (urllib3.exceptions.HTTPError, ConnectionError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        return int(args.func(args))
    except (PluginError, SpecError, BackupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KubeError as exc:
        print(f"error: {error_message(exc)}", file=sys.stderr)
        return 1
    except (urllib3_errors()) as exc:
        print(f"error: cannot reach the API server: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if os.environ.get("KUBECTL_ODOO_DEBUG"):
            print(f"took {time.monotonic() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

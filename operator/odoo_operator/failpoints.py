"""Crash injection for the restart-safety tests (in the spirit of etcd's gofail).

`ODOO_OPERATOR_FAILPOINTS=name[,name…]` makes the process die at once, as a SIGKILL would, when it
reaches `hit(name)`. Unset (always, outside tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import sys


def hit(name: str) -> None:
    wanted = os.environ.get("ODOO_OPERATOR_FAILPOINTS", "")
    if wanted and name in wanted.split(","):
        sys.stderr.write(f"failpoint {name}: exiting\n")
        sys.stderr.flush()
        os._exit(137)

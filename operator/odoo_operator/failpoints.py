"""Crash injection for the restart-safety tests (in the spirit of etcd's gofail).

`ODOO_OPERATOR_FAILPOINTS=name[,name…]` makes the process die at once, as a SIGKILL would, when it
reaches `hit(name)`. An entry `name@detail` fires only where the call passes that detail (the object's
namespace, so a test's failpoint never fires for another test's objects). Unset (always, outside tests)
it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import sys


def hit(name: str, detail: str | None = None) -> None:
    wanted = os.environ.get("ODOO_OPERATOR_FAILPOINTS", "")
    if not wanted:
        return
    for entry in wanted.split(","):
        point, _, only = entry.partition("@")
        if point == name and (not only or only == detail):
            sys.stderr.write(f"failpoint {name}: exiting\n")
            sys.stderr.flush()
            os._exit(137)

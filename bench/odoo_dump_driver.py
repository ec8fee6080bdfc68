"""Odoo's own database-manager backup and restore, run by ODOO's Python (bench_backup's "Odoo" rows).

    .cache/odoo/current/venv/bin/python bench/odoo_dump_driver.py -c odoo.conf dump DB OUT.zip
    .cache/odoo/current/venv/bin/python bench/odoo_dump_driver.py -c odoo.conf restore DB IN.zip
    (--odoo-src: Odoo's source tree, default .cache/odoo/current/src)

`dump` calls `odoo.service.db.dump_db(DB, stream, 'zip')` with `stream` a file opened on OUT.zip; `restore`
calls `odoo.service.db.restore_db(DB, IN.zip, copy=False)`: the code behind /web/database/backup and
/web/database/restore, unchanged. odoo.conf gives db_host/db_port/db_user/db_password and data_dir (the
filestore is `<data_dir>/filestore/<db>`), as for odoo-bin. Before the clock starts, what a running Odoo
server has already done: the configuration parsed and the server-wide modules (base, web) imported.

Prints one JSON line: `total` (seconds of the dump_db / restore_db call) and its steps, timed by wrapping
the functions Odoo calls (shutil.copytree, subprocess.run, odoo.tools.osutil.zip_dir; _create_empty_database,
ZipFile.extractall, Registry.new, shutil.move); `import` is the seconds taken to get there.

Not part of the operator: this file never imports odoo_operator, and only Odoo's Python runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()
ODOO_SRC = Path(__file__).resolve().parents[1] / ".cache" / "odoo" / "current" / "src"


def timed(steps: dict[str, float], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            steps[name] += time.perf_counter() - began
    return wrapper


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True, help="odoo.conf")
    parser.add_argument("--odoo-src", type=Path, default=ODOO_SRC, help=f"Odoo's source tree (default {ODOO_SRC})")
    parser.add_argument("action", choices=["dump", "restore"])
    parser.add_argument("database")
    parser.add_argument("file")
    args = parser.parse_args()

    sys.path.insert(0, str(args.odoo_src))
    import shutil
    import subprocess
    import zipfile

    import odoo
    import odoo.modules.registry
    import odoo.service.db
    import odoo.service.server
    import odoo.tools.osutil

    odoo.tools.config.parse_config(["-c", args.config])
    odoo.service.server.load_server_wide_modules()
    steps: dict[str, float] = defaultdict(float)
    steps["import"] = time.perf_counter() - STARTED
    run_name = "pg_dump" if args.action == "dump" else "psql"
    subprocess.run = timed(steps, run_name, subprocess.run)
    began = time.perf_counter()
    if args.action == "dump":
        shutil.copytree = timed(steps, "copytree", shutil.copytree)
        odoo.tools.osutil.zip_dir = timed(steps, "zip_dir", odoo.tools.osutil.zip_dir)
        with open(args.file, "wb") as stream:
            odoo.service.db.dump_db(args.database, stream, "zip")
    else:
        db = odoo.service.db
        db._create_empty_database = timed(steps, "create_database", db._create_empty_database)
        zipfile.ZipFile.extractall = timed(steps, "extractall", zipfile.ZipFile.extractall)
        registry = odoo.modules.registry.Registry
        registry.new = timed(steps, "registry", registry.new)  # type: ignore[method-assign]
        shutil.move = timed(steps, "move_filestore", shutil.move)
        db.restore_db(args.database, args.file, copy=False)
    steps["total"] = time.perf_counter() - began
    print(json.dumps(steps), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

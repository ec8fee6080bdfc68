#!/usr/bin/env python3
"""The official `odoo` image's /usr/local/bin/wait-for-psql.py (odoo/docker 16.0), same behaviour:
try to connect to the `postgres` database once a second until --timeout seconds have passed; exit 1
with the last connection error if no attempt succeeded."""
import argparse
import sys
import time

import psycopg2

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--db_host", "--db_port", "--db_user", "--db_password"):
        parser.add_argument(name, required=True)
    parser.add_argument("--timeout", type=int, default=5)
    args = parser.parse_args()

    started = time.time()
    error = ""
    while time.time() - started < args.timeout:
        try:
            psycopg2.connect(user=args.db_user, host=args.db_host, port=args.db_port,
                             password=args.db_password, dbname="postgres").close()
            error = ""
            break
        except psycopg2.OperationalError as exc:
            error = exc
        time.sleep(1)

    if error:
        print("Database connection failure: %s" % error, file=sys.stderr)
        sys.exit(1)

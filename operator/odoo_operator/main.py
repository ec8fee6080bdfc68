"""kopf registrations only: which events of which kinds reach which function. Each registration is one
call into handlers.py (one section per kind: OdooDatabase, DatabaseBackup, PostgresServer, DomainMapping,
DomainClaim, the children) or loop.py (start-up, clean-up); no logic lives here."""

from __future__ import annotations

from typing import Any

import kopf

from odoo_operator import GROUP, VERSION, handlers, loop
from odoo_operator.api.labels import MANAGED_BY, MANAGED_BY_LABEL
from odoo_operator.config import Settings
from odoo_operator.runtime import memory

MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}
# Watched (cluster-wide) to wake the owner's loop when one of them changes. Not Secrets: kopf filters
# labels client-side, so watching them means reading every Secret of the cluster; the operator reads
# its own by name instead (controller.odoodatabase_create.ensure_db_secret) and may not list Secrets at all.
CHILD_KINDS = {
    "Service": ("v1", "services"),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims"),
    "Deployment": ("apps/v1", "deployments"),
    "Job": ("batch/v1", "jobs"),
    "CronJob": ("batch/v1", "cronjobs"),
    "Ingress": ("networking.k8s.io/v1", "ingresses"),
}

memory.enable_dumps()  # diagnostics: off unless ODOO_OPERATOR_MEMORY_DUMP names a directory


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    loop.startup(settings)


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    loop.cleanup()


@kopf.daemon(GROUP, VERSION, "odoodatabases", cancellation_timeout=60)
async def odoo_database(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any) -> None:
    del _  # kopf's other kwargs: not kept for the daemon's whole life
    await handlers.database_loop(body, stopped, logger)


@kopf.on.event(GROUP, VERSION, "odoodatabases")
def odoo_database_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    handlers.on_database_event(body, type)
    handlers.wake_mappings_of_database(body, type)  # the mappings leading to it (one handler: one thread hop)


@kopf.on.event(GROUP, VERSION, "odoodatabases", id="slim")
async def odoo_database_slim(body: kopf.Body, **_: Any) -> None:
    handlers.slim_body(body)  # in the event loop, not a thread: see there


@kopf.on.delete(GROUP, VERSION, "odoodatabases")
def odoo_database_delete(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    handlers.delete_database(body, logger)


@kopf.daemon(GROUP, VERSION, "databasebackups", cancellation_timeout=60)
async def database_backup(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any) -> None:
    del _  # kopf's other kwargs: not kept for the daemon's whole life
    await handlers.backup_loop(body, stopped, logger)


@kopf.on.event(GROUP, VERSION, "databasebackups", id="slim")
async def database_backup_slim(body: kopf.Body, **_: Any) -> None:
    handlers.slim_body(body)


@kopf.on.event(GROUP, VERSION, "databasebackups")
def database_backup_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    handlers.on_backup_event(body, type)


@kopf.on.event(GROUP, VERSION, "postgresservers")
def postgres_server_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    handlers.on_server_event(body, type)


# Every 15 s: reachability, and drift (a database dropped behind our back is reported within 30 s).
@kopf.timer(GROUP, VERSION, "postgresservers", interval=15, initial_delay=0.5)
def postgres_server_check(body: kopf.Body, **_: Any) -> None:
    handlers.check_server(body)


@kopf.daemon(GROUP, VERSION, "domainmappings", cancellation_timeout=60)
async def domain_mapping(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any) -> None:
    del _  # kopf's other kwargs: not kept for the daemon's whole life
    await handlers.mapping_loop(body, stopped, logger)


@kopf.on.event(GROUP, VERSION, "domainmappings")
def domain_mapping_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    handlers.on_mapping_event(body, type)


@kopf.on.delete(GROUP, VERSION, "domainmappings")
def domain_mapping_delete(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    handlers.delete_mapping(body, logger)


@kopf.on.event(GROUP, VERSION, "domainclaims")
def domain_claim_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    handlers.on_claim_event(body, type)


def _register_child(kind: str, api_version: str, plural: str) -> None:
    group, _, version = api_version.rpartition("/")

    def on_child(body: kopf.Body, type: str | None, **_: Any) -> None:
        handlers.on_child_event(kind, body, type)

    on_child.__name__ = f"child_{kind.lower()}"
    kopf.on.event(group, version, plural, labels=MANAGED, id=f"child-{kind.lower()}")(on_child)


if Settings.from_env().gateway:  # the databases' own hosts and the DomainMappings are HTTPRoutes then
    CHILD_KINDS["HTTPRoute"] = ("gateway.networking.k8s.io/v1", "httproutes")

for _kind, (_api_version, _plural) in CHILD_KINDS.items():
    _register_child(_kind, _api_version, _plural)

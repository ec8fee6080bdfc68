"""Hostile input meets the real API server: every hostile spec is refused by the CRD's own schema (before the
operator sees it) with a message naming the field; every name the CRD accepts gives children the API server
accepts (checked by server-side dry-run create of each object the builders make)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from odoo_operator import specs
from odoo_operator.api.domains import parse_domain_mapping
from odoo_operator.api.model import parse_database_backup, parse_odoo_database
from odoo_operator.config import Settings
from odoo_operator.kube import Kube, KubeError, _path

pytestmark = pytest.mark.e2e

API_VERSION = "odoo.dbmanager.io/v1alpha1"
SETTINGS = Settings(base_domain="apps.example.com", images={"17.0": "odoo:17.0"}, ingress_class="nginx",
                    cluster_issuer="letsencrypt")
ENDPOINT = specs.app.DatabaseEndpoint("pg.example", 5432, "prefer")


def odb(name: str = "shop", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "OdooDatabase", "metadata": {"name": name},
            "spec": {"version": "17.0", **spec}}


def odbb(name: str = "shop-backup", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "DatabaseBackup", "metadata": {"name": name},
            "spec": {"databaseRef": {"name": "shop"}, **spec}}


def odm(name: str = "shop-domain", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "DomainMapping", "metadata": {"name": name},
            "spec": {"domain": "shop.example.com", "databaseRef": {"name": "shop"}, **spec}}


# Names that must never be taken as a reference: they would leave the namespace's collection in a URL, or
# are not names of the kind at all.
TRAVERSALS = ["../kube-system/secrets/admin", "..", ".", "shop/../../other", "a/b", "shop%2F..%2Fx"]
NOT_ODOO_NAMES = [*TRAVERSALS, "Shop", "1shop", "shop.prod", "-shop", "shop-", "a" * 64, "shop\n", "shop\x00",
                  "shop space", "ｓｈｏｐ", ""]
NOT_SUBDOMAINS = [*TRAVERSALS, "UPPER", "a..b", ".hidden", "x\ty", "b" * 254]
SQL_LIKE = ["shop; DROP DATABASE postgres", "shop'--", 'shop"', "x) OR 1=1", "$(reboot)", "shop`id`", "a\x00b",
            "shop\n", "-- comment", "pg_catalog'"]

HOSTILE_EMAILS = ["Jane <jane@example.com>", "a@example.com, b@example.com", "a@example.com\nBcc: x@evil.example",
                  "a\x00@example.com", "a@localhost", "a@b@example.com", '"a b"@example.com', "jane@example..com",
                  "@example.com", "jane@", "x" * 250 + "@example.com", "jane@[127.0.0.1]"]

HOSTILE: list[Any] = [
    *(pytest.param(odb(duplicateFrom={"name": v}), "spec.duplicateFrom.name", id=f"duplicateFrom-{i}")
      for i, v in enumerate(NOT_ODOO_NAMES)),
    *(pytest.param(odbb(databaseRef={"name": v}), "spec.databaseRef.name", id=f"odbb-databaseRef-{i}")
      for i, v in enumerate(NOT_ODOO_NAMES)),
    *(pytest.param(odm(databaseRef={"name": v}), "spec.databaseRef.name", id=f"odm-databaseRef-{i}")
      for i, v in enumerate(NOT_ODOO_NAMES[:8])),
    *(pytest.param(odb(restoreFrom={"backup": v}), "spec.restoreFrom.backup", id=f"restoreFrom-backup-{i}")
      for i, v in enumerate([*NOT_SUBDOMAINS[:-1], "c" * 64])),
    *(pytest.param(odbb(storage={"pvc": {"claimName": v}}), "spec.storage.pvc.claimName", id=f"claimName-{i}")
      for i, v in enumerate(NOT_SUBDOMAINS)),
    pytest.param(odb(restoreFrom={"file": "a.zip", "storage": {"pvc": {"claimName": "../x"}}}),
                 "spec.restoreFrom.storage.pvc.claimName", id="restoreFrom-claimName"),
    pytest.param(odb(backup={"storage": {"pvc": {"claimName": "a/b"}}}), "spec.backup.storage.pvc.claimName",
                 id="backup-claimName"),
    pytest.param(odbb(storage={"s3": {"bucket": "b", "credentialsSecret": {"name": "../admin"}}}),
                 "spec.storage.s3.credentialsSecret.name", id="s3-credentialsSecret"),
    pytest.param(odbb(storage={"s3": {"bucket": "../other-bucket"}}), "spec.storage.s3.bucket", id="s3-bucket"),
    pytest.param(odm(tls={"secretName": "../kube-system/tls"}), "spec.tls.secretName", id="tls-secretName"),
    pytest.param(odm(tls={"clusterIssuer": "A/B"}), "spec.tls.clusterIssuer", id="tls-clusterIssuer"),
    pytest.param(odb(restoreFrom={"backup": "b", "artifact": "../../x"}), "spec.restoreFrom.artifact",
                 id="restoreFrom-artifact"),
    pytest.param(odb(server="../main"), "spec.server", id="server-traversal"),
    # Names of the objects themselves: each names children and is written into their labels.
    pytest.param(odb("1shop"), "metadata.name", id="odb-name-leading-digit"),
    pytest.param(odb("shop.prod", databaseName="shop"), "metadata.name", id="odb-name-dot"),
    pytest.param(odb("a" * 64, databaseName="shop"), "metadata.name", id="odb-name-64"),
    pytest.param(odbb("b" * 64), "metadata.name", id="odbb-name-64"),
    pytest.param(odm("m" * 64), "metadata.name", id="odm-name-64"),
    # SQL-looking, control-character and reserved database names.
    *(pytest.param(odb(databaseName=v), "spec.databaseName", id=f"databaseName-sql-{i}")
      for i, v in enumerate(SQL_LIKE)),
    pytest.param(odb(databaseName="TEMPLATE1"), "spec.databaseName", id="databaseName-reserved"),
    pytest.param(odb(databaseName="d" * 64), "spec.databaseName", id="databaseName-64"),
    # Huge numbers.
    pytest.param(odb(expiresAfter="9999999999d"), "spec.expiresAfter", id="expiresAfter-overflow"),
    pytest.param(odb(expiresAfter="1234567h"), "spec.expiresAfter", id="expiresAfter-7-digits"),
    pytest.param(odb(expiresAfter="-1d"), "spec.expiresAfter", id="expiresAfter-negative"),
    pytest.param(odb(expiresAfter="1d\n"), "spec.expiresAfter", id="expiresAfter-newline"),
    pytest.param(odb(app={"replicas": 10**12}), "spec.app.replicas", id="replicas-huge"),
    pytest.param(odb(app={"replicas": -1}), "spec.app.replicas", id="replicas-negative"),
    pytest.param(odb(app={"workers": 2**40}), "spec.app.workers", id="workers-huge"),
    pytest.param(odbb(retention={"keepLast": 10**9}), "spec.retention.keepLast", id="keepLast-huge"),
    pytest.param(odb(backup={"retention": {"keepDaily": 10**6}}), "spec.backup.retention.keepDaily",
                 id="backup-keepDaily-huge"),
    pytest.param(odbb(retention={"keepWeekly": -5}), "spec.retention.keepWeekly", id="keepWeekly-negative"),
    # Wrong types.
    pytest.param(odb(version=17), "spec.version", id="version-int"),
    pytest.param(odb(databaseName=123), "spec.databaseName", id="databaseName-int"),
    pytest.param(odb(app="big"), "spec.app", id="app-string"),
    pytest.param(odb(app={"replicas": "2"}), "spec.app.replicas", id="replicas-string"),
    pytest.param(odb(tags="prod"), "spec.tags", id="tags-string"),
    pytest.param(odb(duplicateFrom="shop"), "spec.duplicateFrom", id="duplicateFrom-string"),
    pytest.param(odb(deletionPolicy=["Delete"]), "spec.deletionPolicy", id="deletionPolicy-list"),
    pytest.param(odb(backup={"enabled": "yes"}), "spec.backup.enabled", id="backup-enabled-string"),
    pytest.param(odbb(databaseRef="shop"), "spec.databaseRef", id="odbb-databaseRef-string"),
    pytest.param(odm(domain=["shop.example.com"]), "spec.domain", id="domain-list"),
    pytest.param(odb(unexpected=True), "spec.unexpected", id="unknown-field"),
    # Overlong strings.
    pytest.param(odb(hostname=("h" * 60 + ".") * 4 + "example.com"), "spec.hostname", id="hostname-long"),
    pytest.param(odb(image="i" * 513), "spec.image", id="image-long"),
    pytest.param(odb(subscription={"code": "c" * 129}), "spec.subscription.code", id="subscription-long"),
    pytest.param(odb(tags=["t" * 64]), "spec.tags[0]", id="tag-long"),
    pytest.param(odb(app={"config": {"log_level": "v" * 1025}}), "spec.app.config.log_level", id="config-long"),
    pytest.param(odb(restoreFrom={"file": "f" * 1025}), "spec.restoreFrom.file", id="file-long"),
    pytest.param(odbb(schedule="1 " * 70), "spec.schedule", id="schedule-long"),
    pytest.param(odm(domain=("d" * 60 + ".") * 4 + "example.com"), "spec.domain", id="domain-long"),
    pytest.param(odbb(storage={"s3": {"bucket": "b", "endpoint": "e" * 2049}}), "spec.storage.s3.endpoint",
                 id="s3-endpoint-long"),
    # Control characters.
    pytest.param(odb(hostname="shop\r.example.com"), "spec.hostname", id="hostname-cr"),
    pytest.param(odb(tags=["a\nb"]), "spec.tags[0]", id="tag-newline"),
    pytest.param(odb(app={"config": {"log_level": "info\n[options]\nlist_db = True"}}), "spec.app.config[log_level]",
                 id="config-injection"),
    pytest.param(odm(domain="shop.example.com\n"), "spec.domain", id="domain-newline"),
    pytest.param(odb(restoreFrom={"file": "a\x00.zip"}), "spec.restoreFrom.file", id="file-nul"),
    # E-mails (spec.users, spec.owner): one plain address each, as Odoo's login and as a mail recipient.
    *(pytest.param(odb(users=[{"email": v}]), "spec.users[0].email", id=f"user-email-{i}")
      for i, v in enumerate(HOSTILE_EMAILS)),
    *(pytest.param(odb(owner={"email": v}), "spec.owner.email", id=f"owner-email-{i}")
      for i, v in enumerate(HOSTILE_EMAILS[:6])),
    pytest.param(odb(owner={"email": "o@example.com", "name": "Olga\r\nBcc: x@evil.example"}), "spec.owner.name",
                 id="owner-name-header-injection"),
    pytest.param(odb(owner={"email": "o@example.com", "name": "n" * 129}), "spec.owner.name", id="owner-name-long"),
    pytest.param(odb(users=[{"email": f"u{i}@example.com"} for i in range(501)]), "spec.users", id="users-501"),
    pytest.param(odb(users=[{"email": "a@example.com", "groups": ["base.group_system"]}]), "spec.users[0].groups",
                 id="user-unknown-field"),
]


@pytest.fixture(scope="module")
def kube(cluster: Any) -> Kube:
    return Kube(kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))


@pytest.fixture(scope="module")
def hostile_namespace(cluster: Any) -> Iterator[str]:
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def dry_run_create(kube: Kube, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """What `kubectl create --dry-run=server` sends: a POST the API server validates in full, then discards."""
    path = _path(obj["apiVersion"], obj["kind"], None, namespace)
    return kube._call("POST", path, body=obj, query=[("dryRun", "All"), ("fieldValidation", "Strict")])


def test_about_a_hundred_hostile_specs() -> None:
    assert len(HOSTILE) >= 100


@pytest.mark.parametrize(("obj", "field"), HOSTILE)
def test_hostile_spec_is_refused_by_the_api_server_naming_the_field(
        kube: Kube, hostile_namespace: str, obj: dict[str, Any], field: str) -> None:
    with pytest.raises(KubeError) as refused:
        dry_run_create(kube, obj, hostile_namespace)
    assert refused.value.status in (400, 422), refused.value
    assert field in refused.value.message, refused.value.message


# The longest and oddest names each CRD accepts (OdooDatabase: DNS-1035 labels of 1 to 63; DatabaseBackup
# and DomainMapping: DNS-1123 subdomains of at most 63, dots included).
ODD_DATABASE_NAMES = ["a" * 63, "x", "a-1", "z" + "-" * 61 + "9", "b" * 57, "c" * 58, "d" * 52 + "-" + "9" * 10]
ODD_BACKUP_NAMES = ["b" * 63, "1.2.3", "x" * 52, "y" * 53, "ab." * 20 + "abz", "0-9"]


@pytest.mark.parametrize("name", ODD_DATABASE_NAMES)
def test_every_child_of_the_oddest_accepted_names_is_accepted(
        cluster: Any, kube: Kube, hostile_namespace: str, name: str) -> None:
    obj = odb(name, databaseName="shop", duplicateFrom={"name": "source"}, backup={"schedule": "@daily"})
    created = kube.create({**obj, "metadata": {"name": name, "namespace": hostile_namespace}})
    assert created is not None
    db = parse_odoo_database(created, SETTINGS)
    children = [
        specs.app.build_db_secret(db, "pg", 5432, "disable", "pw"),
        specs.app.build_admin_secret(db, "pw"),
        specs.app.build_filestore_pvc(db, SETTINGS),
        specs.app.build_sessions_pvc(db, SETTINGS),
        specs.app.build_init_job(db, ENDPOINT),
        specs.app.build_neutralize_job(db, ENDPOINT),
        specs.app.build_filestore_copy_job(db, "busybox"),
        specs.app.build_deployment(db, 1, "h", ENDPOINT),
        specs.app.build_service(db),
        specs.routes.build_database_ingress(db, SETTINGS),
        specs.backup.build_restore_job(db, db.backup.storage if db.backup else None, SETTINGS,  # type: ignore
                                          source_database="source", artifact="20240101T000000Z"),
        specs.backup.build_final_backup_job(db, "shop", db.backup.storage, db.backup.retention,  # type: ignore
                                               SETTINGS),
    ]
    daily = specs.backup.build_daily_backup(db)
    children.append(daily)
    backup = parse_database_backup({**daily, "metadata": {**daily["metadata"], "uid": "u-1"}}, SETTINGS)
    children += [specs.backup.build_backup_job(backup, db, "shop", SETTINGS),
                 specs.backup.build_backup_cronjob(backup, db, "shop", SETTINGS)]
    mapping = parse_domain_mapping(
        {**odm(name, databaseRef={"name": name}, tls={"clusterIssuer": "letsencrypt"}),
         "metadata": {"name": name, "namespace": hostile_namespace, "uid": "u-2"}}, SETTINGS)
    children.append(specs.routes.build_mapping_route(mapping, db, SETTINGS))
    refused = []
    for child in children:
        try:
            dry_run_create(kube, child, hostile_namespace)
        except KubeError as exc:
            refused.append(f"{child['kind']} {child['metadata']['name']}: {exc.message}")
    assert refused == []
    names = [c["metadata"]["name"] for c in children]
    assert len({(c["kind"], c["metadata"]["name"]) for c in children}) == len(children), names


@pytest.mark.parametrize("name", ODD_BACKUP_NAMES)
def test_every_child_of_the_oddest_accepted_backup_names_is_accepted(
        kube: Kube, hostile_namespace: str, name: str) -> None:
    created = kube.create({**odbb(name, schedule="@daily"), "metadata": {"name": name, "namespace": hostile_namespace}})
    assert created is not None
    backup = parse_database_backup(created, SETTINGS)
    db = parse_odoo_database({**odb("shop"), "metadata": {"name": "shop", "namespace": hostile_namespace,
                                                          "uid": "u-3"}}, SETTINGS)
    for child in (specs.backup.build_backup_job(backup, db, "shop", SETTINGS),
                  specs.backup.build_backup_cronjob(backup, db, "shop", SETTINGS)):
        dry_run_create(kube, json.loads(json.dumps(child)), hostile_namespace)


def test_a_traversing_name_never_reaches_a_url(kube: Kube, hostile_namespace: str) -> None:
    """Escaping alone is not enough: the HTTP client drops '..' segments and the API server decodes '%2F'."""
    for name in ("../../kube-system/secrets/x", "..", "a%2Fb", "a/b", "A", ""):
        with pytest.raises(KubeError) as refused:
            kube.get("v1", "Secret", name, hostile_namespace)
        assert refused.value.status == 422
    with pytest.raises(KubeError):
        kube.list("v1", "Secret", "../kube-system")


def longest_name(prefix: str) -> str:
    """63 characters, unique (PostgreSQL database names are server-wide)."""
    head = f"{prefix}{uuid.uuid4().hex[:8]}-"
    return head + "x" * (63 - len(head))


def test_the_longest_names_get_a_ready_database_daily_backups_and_a_test_copy(
        cluster: Any, operator: Any, namespace: str) -> None:
    from conftest import condition, get_json, odoo_database, wait_until
    from test_duplicate import FIXTURE, connect_as_owner
    from test_lifecycle import wait_ready

    source = longest_name("s")
    cluster.kubectl("apply", "-f", "-", input=odoo_database(source, namespace))
    wait_ready(cluster, source, namespace)
    db = parse_odoo_database(get_json(cluster, "odb", source, "-n", namespace), SETTINGS)

    # Daily backups: the DatabaseBackup <name>-daily (shortened to 63) and its CronJob (shortened to 52).
    daily = specs.backup.daily_backup_name(db)
    assert len(daily) <= 63 and daily != f"{source}-daily"

    def scheduled() -> Any:
        obj = get_json(cluster, "odbb", daily, "-n", namespace) if cluster.kubectl(
            "get", "odbb", daily, "-n", namespace, check=False).returncode == 0 else {}
        return obj if condition(obj, "Ready").get("reason") == "Scheduled" else None
    backup = parse_database_backup(wait_until(scheduled, 90, f"{daily} to be Scheduled"), SETTINGS)
    cron = get_json(cluster, "cronjob", specs.backup.backup_cronjob_name(backup), "-n", namespace)
    assert len(cron["metadata"]["name"]) <= 52 and cron["spec"]["schedule"] == "@daily"

    # A neutralized copy, also 63 characters: its neutralize Job (63 at most) ran before its app.
    with connect_as_owner(cluster, source, namespace) as conn:
        conn.execute(FIXTURE.read_text())
    copy = longest_name("c")
    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        copy, namespace, duplicateFrom={"name": source, "forTesting": True}))
    obj = wait_ready(cluster, copy, namespace, timeout=150)
    assert obj["status"]["neutralized"] is True
    job = get_json(cluster, "job", specs.app.neutralize_job_name(parse_odoo_database(obj, SETTINGS)), "-n", namespace)
    assert job["status"].get("succeeded") == 1

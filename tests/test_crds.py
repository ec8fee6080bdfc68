"""The CustomResourceDefinitions in crds/: their shape, and the real API server's verdict on objects.

The offline half reads the YAML only. The e2e half asks the real kube-apiserver (the `cluster` fixture
installs crds/*.yaml) to accept good objects and to refuse bad ones with a message a human can act on,
since the whole point of the schemas and CEL rules is that bad input never reaches the operator.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CRD_DIR = Path(__file__).resolve().parent.parent / "crds"
GROUP = "odoo.dbmanager.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

READY = '.status.conditions[?(@.type=="Ready")]'
HEAD_COLUMNS = [
    ("Ready", f"{READY}.status", "string", 0),
    ("Reason", f"{READY}.reason", "string", 0),
    ("Phase", ".status.phase", "string", 0),
]
TAIL_COLUMNS = [
    ("Age", ".metadata.creationTimestamp", "date", 0),
    ("Message", f"{READY}.message", "string", 1),
]

EXPECTED: dict[str, dict[str, Any]] = {
    "postgresservers.yaml": {
        "kind": "PostgresServer",
        "plural": "postgresservers",
        "scope": "Cluster",
        "shortNames": ["pgs"],
        "columns": [
            ("Host", ".spec.host", "string", 0),
            ("Version", ".status.serverVersion", "string", 0),
            ("Databases", ".status.databaseCount", "integer", 0),
            ("Cordoned", ".spec.cordoned", "boolean", 0),
            ("Used", ".status.bytesUsed", "integer", 1),
        ],
    },
    "odoodatabases.yaml": {
        "kind": "OdooDatabase",
        "plural": "odoodatabases",
        "scope": "Namespaced",
        "shortNames": ["odb"],
        "columns": [
            ("URL", ".status.url", "string", 0),
            ("Version", ".status.version", "string", 0),
        ],
    },
    "databasebackups.yaml": {
        "kind": "DatabaseBackup",
        "plural": "databasebackups",
        "scope": "Namespaced",
        "shortNames": ["odbb"],
        "columns": [
            ("Database", ".spec.databaseRef.name", "string", 0),
            ("Schedule", ".spec.schedule", "string", 0),
            ("Last Success", ".status.lastSuccessfulTime", "date", 0),
        ],
    },
    "domainmappings.yaml": {
        "kind": "DomainMapping",
        "plural": "domainmappings",
        "scope": "Namespaced",
        "shortNames": ["odm"],
        "columns": [
            ("Domain", ".spec.domain", "string", 0),
            ("Database", ".spec.databaseRef.name", "string", 0),
            ("URL", ".status.url", "string", 0),
        ],
    },
}


# --------------------------------------------------------------------------------------------------
# Offline: the YAML itself
# --------------------------------------------------------------------------------------------------


def load_crd(filename: str) -> dict[str, Any]:
    documents = list(yaml.safe_load_all((CRD_DIR / filename).read_text()))
    assert len(documents) == 1, f"{filename} must hold exactly one document"
    crd: dict[str, Any] = documents[0]
    return crd


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """Yield (path, schema node, ancestors) for every schema node under `node`, itself included."""

    def visit(
        node: dict[str, Any], path: str, ancestors: list[dict[str, Any]]
    ) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
        yield path, node, ancestors
        below = [*ancestors, node]
        for name, child in node.get("properties", {}).items():
            yield from visit(child, f"{path}.{name}", below)
        if isinstance(node.get("items"), dict):
            yield from visit(node["items"], f"{path}[*]", below)
        if isinstance(node.get("additionalProperties"), dict):
            yield from visit(node["additionalProperties"], f"{path}{{*}}", below)

    yield from visit(node, path, [])


def all_rules() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (f"{filename}:{path or '<root>'}", rule, node)
        for filename in EXPECTED
        for path, node, _ in walk(root_schema(load_crd(filename)))
        for rule in node.get("x-kubernetes-validations", [])
    ]


def test_crd_directory_holds_exactly_the_four_kinds_the_internal_claim_and_the_plans() -> None:
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted([*EXPECTED, "domainclaims.yaml",
                                                                       "odooplans.yaml"])


def test_odoo_plan_is_cluster_scoped_limits_without_status() -> None:
    """Written by platform administrators, read by the operator (never written): no status subresource."""
    crd = load_crd("odooplans.yaml")
    assert crd["spec"]["scope"] == "Cluster" and crd["spec"]["names"]["kind"] == "OdooPlan"
    version = crd["spec"]["versions"][0]
    assert "subresources" not in version
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert sorted(spec) == ["customDomains", "maxStoragePerDatabase", "maxTestCopies"]
    assert spec["customDomains"]["default"] is True


def test_domain_claim_is_cluster_scoped_immutable_and_has_no_status() -> None:
    crd = load_crd("domainclaims.yaml")
    assert crd["spec"]["scope"] == "Cluster" and crd["spec"]["names"]["kind"] == "DomainClaim"
    [version] = crd["spec"]["versions"]
    assert "subresources" not in version  # written by the operator only, in one create
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert [r["rule"] for r in spec["x-kubernetes-validations"]] == ["self == oldSelf"]
    assert spec["properties"]["mappingRef"]["required"] == ["namespace", "name", "uid"]


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_status_defaults_to_observed_generation_zero(filename: str) -> None:
    """So kstatus (Flux, kubectl wait) says InProgress, not Current, before the operator's first write."""
    status = root_schema(load_crd(filename))["properties"]["status"]
    assert status["default"] == {"observedGeneration": 0}


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_crd_identity(filename: str) -> None:
    crd = load_crd(filename)
    expected = EXPECTED[filename]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{expected['plural']}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == expected["scope"]
    names = spec["names"]
    assert names["kind"] == expected["kind"]
    assert names["plural"] == expected["plural"]
    assert names["singular"] == expected["kind"].lower()
    assert names["shortNames"] == expected["shortNames"]
    assert names["categories"] == ["odoo"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_printer_columns(filename: str) -> None:
    [version] = load_crd(filename)["spec"]["versions"]
    columns = [(c["name"], c["jsonPath"], c["type"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]]
    assert columns == HEAD_COLUMNS + EXPECTED[filename]["columns"] + TAIL_COLUMNS


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_every_field_is_described_for_kubectl_explain(filename: str) -> None:
    schema = root_schema(load_crd(filename))
    assert schema.get("description")
    undescribed = [
        path
        for path, node, _ in walk(schema)
        if path.startswith((".spec", ".status")) and not path.endswith(("[*]", "{*}")) and not node.get("description")
    ]
    assert undescribed == []


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_status_conditions_follow_the_kubernetes_convention(filename: str) -> None:
    conditions = root_schema(load_crd(filename))["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


def test_every_cel_rule_has_a_human_message() -> None:
    rules = all_rules()
    assert len(rules) > 20
    for where, rule, _ in rules:
        assert rule.get("rule", "").strip(), where
        # message is required even next to messageExpression: it is the fallback if the expression fails.
        message = rule.get("message", "")
        assert len(message.split()) >= 5, f"{where}: rule {rule['rule']!r} needs a sentence-long message"


def test_cel_rules_work_on_bounded_values() -> None:
    """Unbounded strings, lists and maps make the API server's CEL cost estimate blow up."""
    for filename in EXPECTED:
        for path, node, ancestors in walk(root_schema(load_crd(filename))):
            if not node.get("x-kubernetes-validations") or not path:
                continue
            if node.get("type") == "string":
                assert "maxLength" in node or "enum" in node, f"{filename}:{path} needs maxLength"
            for ancestor in ancestors:
                if ancestor.get("type") == "array":
                    assert "maxItems" in ancestor, f"{filename}: a list above {path} needs maxItems"
                if isinstance(ancestor.get("additionalProperties"), dict):
                    assert "maxProperties" in ancestor, f"{filename}: a map above {path} needs maxProperties"


# --------------------------------------------------------------------------------------------------
# Against the real API server
# --------------------------------------------------------------------------------------------------

PLURALS = {e["kind"]: e["plural"] for e in EXPECTED.values()}


def odb(name: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "OdooDatabase",
        "metadata": {"name": name},
        "spec": {"version": "17.0", **spec},
    }


def pgs(name: str = "main", **spec: Any) -> dict[str, Any]:
    base = {"host": "postgres.db.svc", "adminSecretRef": {"namespace": "db", "name": "pg-admin"}}
    return {
        "apiVersion": API_VERSION,
        "kind": "PostgresServer",
        "metadata": {"name": name},
        "spec": {**base, **spec},
    }


def odbb(name: str = "shop-backup", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DatabaseBackup",
        "metadata": {"name": name},
        "spec": {"databaseRef": {"name": "shop"}, **spec},
    }


def odm(name: str = "shop-domain", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DomainMapping",
        "metadata": {"name": name},
        "spec": {"domain": "shop.example.com", "databaseRef": {"name": "shop"}, **spec},
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def namespace_args(obj: dict[str, Any], namespace: str) -> list[str]:
    return [] if obj["kind"] == "PostgresServer" else ["-n", namespace]


def apply(cluster: Any, obj: dict[str, Any], namespace: str, *, dry_run: bool = True) -> Any:
    args = ["apply", "-f", "-", "-o", "json", *namespace_args(obj, namespace)]
    if dry_run:
        args.append("--dry-run=server")
    return cluster.kubectl(*args, input=json.dumps(obj), check=False)


def create(cluster: Any, obj: dict[str, Any], namespace: str) -> None:
    cluster.kubectl("create", "-f", "-", *namespace_args(obj, namespace), input=json.dumps(obj))


@pytest.fixture(scope="module")
def crd_namespace(cluster: Any) -> Iterator[str]:
    name = unique("crd-test")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def created(cluster: Any, crd_namespace: str) -> Iterator[list[dict[str, Any]]]:
    """Objects a test really creates; removed afterwards (cluster-scoped ones are not in the namespace)."""
    objects: list[dict[str, Any]] = []
    yield objects
    for obj in objects:
        cluster.kubectl(
            "delete",
            PLURALS[obj["kind"]],
            obj["metadata"]["name"],
            *namespace_args(obj, crd_namespace),
            "--wait=false",
            "--ignore-not-found",
            check=False,
        )


S3 = {
    "bucket": "backups",
    "endpoint": "http://minio.storage:9000",
    "region": "eu-west-1",
    "prefix": "odoo/",
    "credentialsSecret": {"name": "s3-credentials"},
}

ACCEPTED = [
    pytest.param(odb(), id="odb-minimal"),
    pytest.param(
        odb(
            "shop-full",
            databaseName="Shop_2024.prod-1",
            version="saas~17.2",
            image="registry.example.com/odoo:17.0-custom",
            server="main",
            hostname="shop.example.com",
            tags=["prod", "team_sales", "eu.west"],
            duplicateFrom={"name": "shop", "forTesting": True},
            expiresAfter="1d12h",
            subscription={"code": "M2401010000001"},
            deletionPolicy="Retain",
            backup={
                "enabled": True,
                "schedule": "30 2 * * *",
                "retention": {"keepLast": 2, "keepDaily": 7, "keepWeekly": 4, "keepMonthly": 3},
                "storage": {"s3": S3},
            },
            app={
                "replicas": 2,
                "workers": 4,
                "resources": {"limits": {"cpu": 2, "memory": "2Gi"}, "requests": {"cpu": "500m"}},
                "config": {"limit_time_real": "1200", "log_level": "info"},
                "suspended": False,
            },
            users=[{"email": "jane@example.com", "role": "admin"}, {"email": "joe@example.com"},
                   {"email": "Pia.Portal+shop@sub.example.co.uk", "role": "portal"}],
            owner={"email": "olga@example.com", "name": "Olga Owner"},
            upgrade={"targetVersion": "18.0", "testFirst": False, "deadline": "2030-01-01T00:00:00Z"},
        ),
        id="odb-every-field",
    ),
    pytest.param(
        odb("restored", restoreFrom={"backup": "shop-daily", "artifact": "20240101T000000Z"}),
        id="odb-restore",
    ),
    pytest.param(odb("restored", restoreFrom={"file": "_uploads/shop-2024_01.01+x@y=z,v.zip"}), id="odb-restore-file"),
    pytest.param(
        odb("restored", restoreFrom={"file": "ns/shop/shop.dump", "sha256": "a" * 64, "identity": "keep",
                                     "neutralize": True, "storage": {"s3": {"bucket": "b", "prefix": "p"}}}),
        id="odb-restore-file-every-field",
    ),
    pytest.param(odb("x" * 63, databaseName="shop"), id="odb-longest-name-with-databaseName"),
    pytest.param(odb("x", databaseName="shop"), id="odb-one-char-name-with-databaseName"),
    pytest.param(odb("postgres", databaseName="pg_shop"), id="odb-reserved-name-with-databaseName"),
    pytest.param(odb(expiresAfter="45s"), id="odb-expires-seconds"),
    pytest.param(
        odb(backup={"schedule": "@weekly", "storage": {"pvc": {"claimName": "backups"}}}), id="odb-backup-pvc"
    ),
    pytest.param(pgs(port=6432, sslMode="verify-full", default=True, maxDatabases=100), id="pgs-full"),
    pytest.param(odbb(), id="odbb-one-off"),
    pytest.param(odbb(schedule="@daily", format="dump", storage={"pvc": {"claimName": "backups"}}), id="odbb-pvc"),
    pytest.param(
        odbb(
            schedule="0 */6 * * MON-FRI",
            storage={"s3": S3},
            retention={"keepLast": 10, "keepDaily": 0},
            suspend=True,
        ),
        id="odbb-s3",
    ),
    pytest.param(odm(tls={"clusterIssuer": "letsencrypt"}), id="odm-issuer"),
    pytest.param(odm(domain="*.shops.example.com", tls={"secretName": "shops-tls"}), id="odm-wildcard"),
]


@pytest.mark.e2e
@pytest.mark.parametrize("obj", ACCEPTED)
def test_good_objects_are_accepted(cluster: Any, crd_namespace: str, obj: dict[str, Any]) -> None:
    result = apply(cluster, obj, crd_namespace)
    assert result.returncode == 0, result.stderr


INVALID_DATABASE_NAME = "databaseName must be 2 to 63 characters long"
RESERVED_DATABASE_NAME = "databaseName postgres, template0 and template1 are reserved"


def unusable_metadata_name(name: str) -> str:
    return (
        f'metadata.name: Invalid value: "{name}" is used as the PostgreSQL database name when '
        "spec.databaseName is absent, and it is not a valid one (2 to 63 characters; postgres, template0 "
        "and template1 are reserved): set spec.databaseName"
    )


BAD_DURATION = "expiresAfter must be a duration made of days (d), hours (h), minutes (m) and seconds (s)"
RESTORE_PATH = "restoreFrom.file must be a relative path inside the storage"
RESTORE_ONE = "restoreFrom needs exactly one of backup"
BAD_CRON = "schedule must be a cron expression"
BAD_TAG = "each tag becomes a label name, so it must be 1 to 63 lower-case letters"
BAD_DOMAIN = "domain must be a lower-case fully qualified domain name (RFC 1123) with at least one dot"
ONE_STORAGE = "storage needs exactly one of pvc (a PersistentVolumeClaim) or s3"

REFUSED = [
    pytest.param(odb(databaseName="-bad"), INVALID_DATABASE_NAME, id="databaseName-leading-dash"),
    pytest.param(odb(databaseName="a"), INVALID_DATABASE_NAME, id="databaseName-one-char"),
    pytest.param(odb(databaseName="has space"), INVALID_DATABASE_NAME, id="databaseName-space"),
    pytest.param(
        odb(databaseName="a" * 64),
        "spec.databaseName: Too long: may not be more than 63 bytes",
        id="databaseName-64-chars",
    ),
    pytest.param(odb(databaseName="postgres"), RESERVED_DATABASE_NAME, id="databaseName-postgres"),
    pytest.param(odb(databaseName="template1"), RESERVED_DATABASE_NAME, id="databaseName-template1"),
    pytest.param(odb(databaseName="Template0"), RESERVED_DATABASE_NAME, id="databaseName-Template0"),
    pytest.param(odb("a" * 64), "metadata.name: Too long: may not be more than 63 bytes", id="metadata-name-64-chars"),
    pytest.param(odb("a" * 64, databaseName="shop"), "metadata.name: Too long",
                 id="metadata-name-64-chars-databaseName"),
    pytest.param(odb("1shop", databaseName="shop"), "metadata.name of an OdooDatabase must be a DNS-1035 label",
                 id="metadata-name-leading-digit"),
    pytest.param(odb("shop.prod", databaseName="shop"), "metadata.name of an OdooDatabase must be a DNS-1035 label",
                 id="metadata-name-dot"),
    pytest.param(odb("a"), unusable_metadata_name("a"), id="metadata-name-one-char"),
    pytest.param(odb("postgres"), unusable_metadata_name("postgres"), id="metadata-name-postgres"),
    pytest.param(odb(version="17"), 'version must be an Odoo major version such as "17.0"', id="version-17"),
    pytest.param(
        odb(hostname="Shop.Example.com"),
        "hostname must be a lower-case fully qualified domain name",
        id="hostname-uppercase",
    ),
    pytest.param(odb(server="Main_Server"), "server must be the name of a PostgresServer", id="server-invalid"),
    pytest.param(
        odb(duplicateFrom={"name": "shop"}, restoreFrom={"backup": "shop-daily"}),
        "spec.duplicateFrom and spec.restoreFrom are mutually exclusive",
        id="duplicateFrom-and-restoreFrom",
    ),
    *(
        pytest.param(odb(restoreFrom={"file": path}), RESTORE_PATH, id=f"restoreFrom-file-{n}")
        for n, path in enumerate(["../shop.zip", "a/../../shop.zip", "/etc/passwd", ".hidden", "a//b.zip", "a/./b",
                                  "a\\b.zip", "a/", "shop.zip\n", "a b.zip"])
    ),
    pytest.param(odb(restoreFrom={"file": "x" * 1025}), "Too long", id="restoreFrom-file-too-long"),
    pytest.param(odb(restoreFrom={"backup": "shop-daily", "file": "a.zip"}), RESTORE_ONE, id="restoreFrom-both"),
    pytest.param(odb(restoreFrom={"identity": "keep"}), RESTORE_ONE, id="restoreFrom-neither"),
    pytest.param(odb(restoreFrom={"file": "a.zip", "artifact": "x"}), "restoreFrom.artifact goes with backup",
                 id="restoreFrom-file-artifact"),
    pytest.param(odb(restoreFrom={"backup": "b", "sha256": "a" * 64}), "restoreFrom.storage and restoreFrom.sha256 "
                 "go with file", id="restoreFrom-backup-sha256"),
    pytest.param(odb(restoreFrom={"file": "a.zip", "sha256": "A" * 64}), "restoreFrom.sha256 must be 64 lower-case",
                 id="restoreFrom-sha256-upper"),
    pytest.param(odb(restoreFrom={"file": "a.zip", "identity": "new"}), 'supported values: "fresh", "keep"',
                 id="restoreFrom-identity"),
    pytest.param(odb(restoreFrom={"file": "a.zip", "storage": {}}), "storage needs exactly one of pvc",
                 id="restoreFrom-storage-empty"),
    pytest.param(odb(expiresAfter="15days"), BAD_DURATION, id="expiresAfter-15days"),
    pytest.param(odb(expiresAfter="h"), BAD_DURATION, id="expiresAfter-h"),
    pytest.param(odb(expiresAfter=""), BAD_DURATION, id="expiresAfter-empty"),
    pytest.param(odb(expiresAfter="12h1d"), BAD_DURATION, id="expiresAfter-wrong-order"),
    pytest.param(odb(deletionPolicy="Forever"), "Unsupported value", id="deletionPolicy-unknown"),
    pytest.param(odb(tags=["Prod"]), BAD_TAG, id="tag-uppercase"),
    pytest.param(odb(tags=["-x"]), BAD_TAG, id="tag-leading-dash"),
    pytest.param(
        odb(app={"config": {"limit_time_real": "1200\nlist_db = True"}}),
        "app.config values are written into odoo.conf and must fit on one line",
        id="config-newline",
    ),
    pytest.param(
        odb(app={"config": {"log_level": "debug\r"}}),
        "app.config values are written into odoo.conf and must fit on one line",
        id="config-cr",
    ),
    pytest.param(
        odb(app={"config": {"limit_time_real": "1200", "Bad-Key": "1"}}),
        'app.config key "Bad-Key" is not an odoo.conf option name: keys are 1 to 64 lower-case letters',
        id="config-key",
    ),
    pytest.param(
        odb(app={"config": {"limit_time_real": "1200", "list_db": "True"}}),
        "app.config.list_db is managed by the operator and cannot be set here",
        id="config-operator-key",
    ),
    pytest.param(odb(app={"replicas": 21}), "should be less than or equal to 20", id="replicas-21"),
    pytest.param(odb(users=[{"email": "not-an-email"}]), "email must be one e-mail address", id="user-email"),
    pytest.param(odb(users=[{"email": "Jane <jane@example.com>"}]), "email must be one e-mail address",
                 id="user-email-display-name"),
    pytest.param(odb(users=[{"email": "a@example.com", "role": "owner"}]), 'supported values: "admin", "user"',
                 id="user-role"),
    pytest.param(odb(users=[{"email": "a@example.com"}, {"email": "a@example.com", "role": "admin"}]),
                 "Duplicate value", id="user-twice"),
    pytest.param(odb(owner={"email": "olga@localhost"}), "owner.email must be one e-mail address", id="owner-email"),
    pytest.param(odb(owner={"email": "olga@example.com", "name": "Olga\nOwner"}),
                 "owner.name must be a text on one line", id="owner-name-newline"),
    pytest.param(odb(owner={"name": "Olga"}), "spec.owner.email: Required value", id="owner-without-email"),
    pytest.param(odb(backup={"schedule": "every day"}), BAD_CRON, id="odb-backup-cron-words"),
    pytest.param(
        odb(backup={"storage": {"pvc": {"claimName": "b"}, "s3": S3}}),
        ONE_STORAGE,
        id="odb-backup-pvc-and-s3",
    ),
    pytest.param(odbb(schedule="every day"), BAD_CRON, id="cron-words"),
    pytest.param(odbb(schedule="* * *"), BAD_CRON, id="cron-three-fields"),
    pytest.param(odbb(schedule="* * * * * *"), BAD_CRON, id="cron-six-fields"),
    pytest.param(odbb(storage={"pvc": {"claimName": "backups"}, "s3": S3}), ONE_STORAGE, id="odbb-pvc-and-s3"),
    pytest.param(odbb(storage={}), ONE_STORAGE, id="odbb-no-storage-kind"),
    pytest.param(odbb(format="tar"), 'supported values: "zip", "dump"', id="odbb-format"),
    pytest.param(odm(domain="Shop.Example.com"), BAD_DOMAIN, id="domain-uppercase"),
    pytest.param(odm(domain="localhost"), BAD_DOMAIN, id="domain-no-dot"),
    pytest.param(odm(domain="shop..example.com"), BAD_DOMAIN, id="domain-empty-label"),
    pytest.param(odm(domain=f"{'a' * 64}.example.com"), BAD_DOMAIN, id="domain-label-64-chars"),
    pytest.param(
        odm(tls={"clusterIssuer": "letsencrypt", "secretName": "shop-tls"}),
        "tls takes at most one of clusterIssuer (cert-manager issues the certificate) or secretName",
        id="tls-both",
    ),
    pytest.param(pgs(port=0), "spec.port in body should be greater than or equal to 1", id="pgs-port-0"),
    pytest.param(pgs(sslMode="on"), 'supported values: "disable"', id="pgs-sslMode"),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("obj", "message"), REFUSED)
def test_bad_objects_are_refused_with_a_clear_message(
    cluster: Any, crd_namespace: str, obj: dict[str, Any], message: str
) -> None:
    result = apply(cluster, obj, crd_namespace)
    assert result.returncode != 0, f"accepted: {json.dumps(obj)}"
    assert message in result.stderr


DUPLICATE_IMMUTABLE = "spec.duplicateFrom is immutable"
RESTORE_IMMUTABLE = "spec.restoreFrom is immutable"
SERVER_KEPT = "spec.server cannot be removed once set"
SELECTOR_IMMUTABLE = "spec.serverSelector is immutable"

UPDATES = [
    # (object as created, merge patch, message; None when the update must be accepted)
    pytest.param(
        odb(duplicateFrom={"name": "shop"}),
        {"spec": {"duplicateFrom": {"name": "other"}}},
        DUPLICATE_IMMUTABLE,
        id="duplicateFrom-changed",
    ),
    pytest.param(
        odb(duplicateFrom={"name": "shop"}),
        {"spec": {"duplicateFrom": {"forTesting": True}}},
        DUPLICATE_IMMUTABLE,
        id="duplicateFrom-forTesting-changed",
    ),
    pytest.param(odb(), {"spec": {"duplicateFrom": {"name": "shop"}}}, DUPLICATE_IMMUTABLE, id="duplicateFrom-added"),
    pytest.param(
        odb(duplicateFrom={"name": "shop"}),
        {"spec": {"duplicateFrom": None}},
        DUPLICATE_IMMUTABLE,
        id="duplicateFrom-removed",
    ),
    pytest.param(odb(), {"spec": {"restoreFrom": {"backup": "shop-daily"}}}, RESTORE_IMMUTABLE, id="restoreFrom-added"),
    pytest.param(
        odb(restoreFrom={"backup": "shop-daily"}),
        {"spec": {"restoreFrom": {"artifact": "a1"}}},
        RESTORE_IMMUTABLE,
        id="restoreFrom-changed",
    ),
    pytest.param(
        odb(restoreFrom={"file": "_uploads/a.zip", "identity": "keep"}),
        {"spec": {"restoreFrom": {"identity": "fresh"}}},
        RESTORE_IMMUTABLE,
        id="restoreFrom-identity-changed",
    ),
    pytest.param(
        odb(restoreFrom={"file": "_uploads/a.zip"}),
        {"spec": {"restoreFrom": {"file": "_uploads/b.zip"}}},
        RESTORE_IMMUTABLE,
        id="restoreFrom-file-changed",
    ),
    pytest.param(odb(server="main"), {"spec": {"server": "other"}}, None, id="server-changed-moves"),
    pytest.param(odb(server="main"), {"spec": {"server": None}}, SERVER_KEPT, id="server-removed"),
    pytest.param(odb(), {"spec": {"server": "main"}}, None, id="server-set-later"),
    pytest.param(odb(serverSelector={"matchLabels": {"tier": "gold"}}),
                 {"spec": {"serverSelector": {"matchLabels": {"tier": "silver"}}}}, SELECTOR_IMMUTABLE,
                 id="serverSelector-changed"),
    pytest.param(odb(), {"spec": {"serverSelector": {"matchLabels": {"tier": "gold"}}}}, SELECTOR_IMMUTABLE,
                 id="serverSelector-added"),
    pytest.param(pgs(), {"spec": {"cordoned": True, "maxStorage": "500Gi"}}, None, id="pgs-cordoned-and-limited"),
    pytest.param(pgs(), {"spec": {"maxStorage": "1 GB"}}, "spec.maxStorage", id="pgs-maxStorage-not-a-quantity"),
    pytest.param(
        odb(duplicateFrom={"name": "shop", "forTesting": True}, server="main"),
        {
            "spec": {
                "databaseName": "renamed",
                "version": "18.0",
                "tags": ["test"],
                "app": {"suspended": True},
            }
        },
        None,
        id="rename-upgrade-and-tag-a-duplicate",
    ),
    pytest.param(
        odbb(),
        {"spec": {"databaseRef": {"name": "other"}}},
        "spec.databaseRef is immutable",
        id="odbb-databaseRef-changed",
    ),
    pytest.param(odbb(), {"spec": {"schedule": "@hourly", "suspend": True}}, None, id="odbb-schedule-changed"),
    pytest.param(odm(), {"spec": {"domain": "other.example.com"}}, "spec.domain is immutable", id="odm-domain-changed"),
    pytest.param(odm(), {"spec": {"databaseRef": {"name": "other"}}}, None, id="odm-databaseRef-changed"),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("initial", "patch", "message"), UPDATES)
def test_updates_respect_immutable_fields(
    cluster: Any,
    crd_namespace: str,
    created: list[dict[str, Any]],
    initial: dict[str, Any],
    patch: dict[str, Any],
    message: str | None,
) -> None:
    obj = json.loads(json.dumps(initial))
    obj["metadata"]["name"] = unique(obj["metadata"]["name"])
    create(cluster, obj, crd_namespace)
    created.append(obj)
    result = cluster.kubectl(
        "patch",
        PLURALS[obj["kind"]],
        obj["metadata"]["name"],
        "-n",
        crd_namespace,
        "--type=merge",
        "-p",
        json.dumps(patch),
        check=False,
    )
    if message is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, f"update accepted: {json.dumps(patch)}"
        assert message in result.stderr


@pytest.mark.e2e
def test_defaults_are_filled_in_by_the_api_server(cluster: Any, crd_namespace: str) -> None:
    def applied(obj: dict[str, Any]) -> dict[str, Any]:
        result = apply(cluster, obj, crd_namespace)
        assert result.returncode == 0, result.stderr
        spec: dict[str, Any] = json.loads(result.stdout)["spec"]
        return spec

    database = applied(
        odb(
            duplicateFrom={"name": "shop"},
            backup={},
            app={},
            users=[{"email": "a@b.io"}],
            upgrade={"targetVersion": "18.0"},
        )
    )
    assert database["deletionPolicy"] == "Delete"
    assert database["duplicateFrom"] == {"name": "shop", "forTesting": False}
    assert database["backup"] == {"enabled": True, "schedule": "@daily"}
    assert database["app"] == {"replicas": 1, "suspended": False}
    assert database["users"] == [{"email": "a@b.io", "role": "user"}]
    assert database["upgrade"]["testFirst"] is True

    server = applied(pgs())
    assert (server["port"], server["sslMode"], server["default"]) == (5432, "prefer", False)

    backup = applied(odbb())
    assert backup["format"] == "zip"
    assert backup["retention"] == {"keepDaily": 7, "keepWeekly": 4, "keepMonthly": 3}


NOW = "2025-01-02T03:04:05Z"


def conditions(message: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Provisioning",
            "message": message,
            "lastTransitionTime": NOW,
            "observedGeneration": 1,
        },
        {
            "type": "Reconciling",
            "status": "True",
            "reason": "Provisioning",
            "message": message,
            "lastTransitionTime": NOW,
            "observedGeneration": 1,
        },
    ]


STATUSES = [
    pytest.param(
        odb(),
        {
            "phase": "Provisioning",
            "observedGeneration": 1,
            "conditions": conditions("creating-the-role"),
            "databaseName": "shop",
            "url": "https://shop.odoo.example.com",
            "hostname": "shop.odoo.example.com",
            "server": "main",
            "roleName": "odoo_shop",
            "version": "17.0",
            "sizeBytes": 12345678901,
            "sizeUpdatedAt": NOW,
            "createdAt": NOW,
            "initializedAt": NOW,
            "expiresAt": NOW,
            "neutralized": True,
            "source": "shop-original",
            "lastBackup": NOW,
            "availableUpgrade": "18.0",
        },
        id="OdooDatabase",
    ),
    pytest.param(
        pgs(),
        {
            "phase": "Ready",
            "observedGeneration": 1,
            "conditions": conditions("checking-the-server"),
            "reachable": True,
            "serverVersion": "16.4",
            "databaseCount": 7,
            "bytesUsed": 123456789,
            "bytesFree": 987654321,
            "lastCheckTime": NOW,
        },
        id="PostgresServer",
    ),
    pytest.param(
        odbb(schedule="@daily"),
        {
            "phase": "Ready",
            "observedGeneration": 1,
            "conditions": conditions("waiting-for-the-job"),
            "lastScheduleTime": NOW,
            "lastSuccessfulTime": NOW,
            "artifacts": [
                {
                    "id": "20250102T030405Z",
                    "time": NOW,
                    "sizeBytes": 9876543210,
                    "sha256": "0" * 64,
                    "location": "s3://backups/odoo/shop/20250102T030405Z.zip",
                }
            ],
        },
        id="DatabaseBackup",
    ),
    pytest.param(
        odm(),
        {
            "phase": "Pending",
            "observedGeneration": 1,
            "conditions": conditions("claiming-the-domain"),
            "url": "https://shop.example.com",
            "claim": "shop.example.com",
            "dnsRecord": {"type": "CNAME", "name": "shop.example.com", "value": "ingress.example.net"},
        },
        id="DomainMapping",
    ),
]


def column_text(obj: dict[str, Any], json_path: str) -> str:
    """What `kubectl get` shows in a (non-date) printer column with this JSONPath."""
    value: Any
    if json_path.startswith(READY):
        ready = [c for c in obj.get("status", {}).get("conditions", []) if c.get("type") == "Ready"]
        value = ready[0].get(json_path.removeprefix(f"{READY}.")) if ready else None
    else:
        value = obj
        for key in json_path.lstrip(".").split("."):
            value = value.get(key) if isinstance(value, dict) else None
    return "<none>" if value is None else str(value)


@pytest.mark.e2e
@pytest.mark.parametrize(("initial", "status"), STATUSES)
def test_status_is_kept_and_shown_by_kubectl_get(
    cluster: Any,
    crd_namespace: str,
    created: list[dict[str, Any]],
    initial: dict[str, Any],
    status: dict[str, Any],
) -> None:
    """Every status field the operator writes survives pruning, and the printer columns show them.

    An operator may be running in the same cluster and rewrite the status at any moment, so the patch
    response (what was stored) is checked, and the table is compared with the object it was rendered
    from (same resourceVersion before and after) rather than with the status written here.
    """
    obj = json.loads(json.dumps(initial))
    obj["metadata"]["name"] = unique(obj["metadata"]["name"])
    create(cluster, obj, crd_namespace)
    created.append(obj)
    where = [PLURALS[obj["kind"]], obj["metadata"]["name"], *namespace_args(obj, crd_namespace)]
    replace_status = json.dumps([{"op": "add", "path": "/status", "value": status}])
    patched = cluster.kubectl(
        "patch", *where, "--subresource=status", "--type=json", "-p", replace_status, "-o", "json"
    )
    assert json.loads(patched.stdout)["status"] == status

    for _ in range(10):
        before = json.loads(cluster.kubectl("get", *where, "-o", "json").stdout)
        table = cluster.kubectl("get", *where, "-o", "wide").stdout
        after = json.loads(cluster.kubectl("get", *where, "-o", "json").stdout)
        if before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]:
            break
    else:
        pytest.fail("the object kept changing while its table row was read")
    header, row = table.splitlines()
    columns = HEAD_COLUMNS + EXPECTED[f"{PLURALS[obj['kind']]}.yaml"]["columns"] + TAIL_COLUMNS
    for name, json_path, type_, _ in columns:
        assert name.upper() in header
        if type_ != "date":
            assert column_text(before, json_path) in row, f"{name} ({json_path}) missing from {row!r}"


@pytest.mark.e2e
def test_kubectl_explain_shows_the_descriptions(cluster: Any) -> None:
    deadline = time.monotonic() + 30  # the OpenAPI document is published shortly after the CRD
    while True:
        result = cluster.kubectl("explain", "odb.spec.duplicateFrom", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    assert "exact copy" in result.stdout
    assert "forTesting" in result.stdout


@pytest.mark.e2e
def test_short_names_and_category(cluster: Any, crd_namespace: str) -> None:
    for short_name in ["pgs", "odb", "odbb", "odm", "odoo"]:
        cluster.kubectl("get", short_name, "-n", crd_namespace)

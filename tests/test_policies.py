"""End to end: the policies shipped with the manifests, against the real kube-apiserver (RBAC on) and
kube-controller-manager (clusterrole aggregation, namespace deletion).

- manifests/admission-policy.yaml: DELETE of an OdooDatabase linked to a subscription is refused,
  one by one, with `kubectl delete --all`, with a DELETE on the collection and by namespace deletion.
- manifests/rbac-user-roles.yaml: aggregated into admin / edit / view; only admins delete.

Independent of the operator: objects live in fresh namespaces and are never expected to be reconciled.
If an operator happens to run and adds a finalizer, a DELETE that got through admission leaves the object
with a deletionTimestamp until the operator lets go; that counts as deleted here (see `deleted`).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import get_json, odoo_database, wait_until
from odoo_operator.localcluster import REPO_ROOT, LocalCluster

pytestmark = pytest.mark.e2e

MANIFESTS = REPO_ROOT / "manifests"
ADMISSION_POLICY = MANIFESTS / "admission-policy.yaml"
RBAC_ROLES = MANIFESTS / "rbac-user-roles.yaml"
POLICY = "odoo-database-protected-delete"
ODB = "odoodatabases.odoo.dbmanager.io"
CODE = "M2401010000001"
REMOVE_SUBSCRIPTION = json.dumps([{"op": "remove", "path": "/spec/subscription"}])


# ---- helpers -------------------------------------------------------------------------------------
def manifest_objects(path: Path) -> list[tuple[str, str]]:
    """(resource, name) of every object in a manifest file, for `kubectl get/delete`."""
    kinds = {"ValidatingAdmissionPolicy": "validatingadmissionpolicy",
             "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybinding",
             "ClusterRole": "clusterrole"}
    return [(kinds[doc["kind"]], doc["metadata"]["name"])
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def exists(cluster: LocalCluster, *args: str) -> bool:
    return cluster.kubectl("get", *args, "-o", "name", check=False).returncode == 0


def create_odb(cluster: LocalCluster, namespace: str, name: str, code: str | None = None) -> None:
    spec: dict[str, Any] = {"subscription": {"code": code}} if code else {}
    cluster.kubectl("create", "-f", "-", input=odoo_database(name, namespace, **spec))


def delete_odb(cluster: LocalCluster, namespace: str, *names: str):
    """`kubectl delete` without waiting (a running operator may hold a finalizer for a moment)."""
    return cluster.kubectl("delete", "odb", *names, "-n", namespace, "--wait=false", check=False)


def deleted(cluster: LocalCluster, namespace: str, name: str) -> bool:
    """The DELETE got through admission: the object is gone, or only waits for a finalizer.

    (A running operator holds a finalizer until it has dropped the PostgreSQL database, which may
    take a while; that is the operator's business, not these policies'.)
    """
    result = cluster.kubectl("get", "odb", name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return True
    return "deletionTimestamp" in json.loads(result.stdout)["metadata"]


def wait_deleted(cluster: LocalCluster, namespace: str, name: str, timeout: float = 30) -> None:
    wait_until(lambda: deleted(cluster, namespace, name), timeout, f"{namespace}/{name} to be deleted")


def assert_kept(cluster: LocalCluster, namespace: str, name: str) -> None:
    obj = get_json(cluster, "odb", name, "-n", namespace)
    assert obj, f"{namespace}/{name} is gone"
    assert "deletionTimestamp" not in obj["metadata"], obj["metadata"]


def unlink(cluster: LocalCluster, namespace: str, name: str) -> None:
    cluster.kubectl("patch", "odb", name, "-n", namespace, "--type=json", "-p", REMOVE_SUBSCRIPTION)


def refusal(namespace: str, name: str, code: str = CODE) -> str:
    return f"OdooDatabase {namespace}/{name} is linked to subscription {code}; deleting it is refused."


def assert_refused(result, namespace: str, name: str, code: str = CODE) -> None:
    assert result.returncode != 0, result.stdout
    assert "Forbidden" in result.stderr, result.stderr
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in result.stderr, result.stderr
    assert refusal(namespace, name, code) in result.stderr, result.stderr
    assert "Remove spec.subscription first (after cancelling the subscription), then delete." in result.stderr


def as_user(cluster: LocalCluster, user: str, *args: str, input: str | None = None):
    """kubectl as `user` (impersonation; the test cluster's admin token is in system:masters)."""
    return cluster.kubectl(f"--as={user}", "--as-group=system:authenticated", *args, input=input, check=False)


def can_i(cluster: LocalCluster, user: str, verb: str, resource: str, namespace: str) -> bool:
    """`kubectl auth can-i`; a resource spelled "plural.group/sub" asks about that subresource."""
    resource, _, subresource = resource.partition("/")
    extra = [f"--subresource={subresource}"] if subresource else []
    result = cluster.kubectl("auth", "can-i", verb, resource, *extra, "-n", namespace, f"--as={user}",
                             "--as-group=system:authenticated", check=False)
    return result.stdout.strip() == "yes"


def new_namespace(cluster: LocalCluster, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    return name


def drop_namespace(cluster: LocalCluster, namespace: str) -> None:
    """Unlink whatever is still linked (or the namespace would stay Terminating), then delete it."""
    for item in get_json(cluster, "odb", "-n", namespace).get("items", []):
        if "subscription" in item.get("spec", {}):
            cluster.kubectl("patch", "odb", item["metadata"]["name"], "-n", namespace, "--type=json",
                            "-p", REMOVE_SUBSCRIPTION, check=False)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def policies(cluster: LocalCluster) -> Iterator[None]:
    """Both manifests applied and the admission policy enforced; removed afterwards if we created them."""
    objects = manifest_objects(ADMISSION_POLICY) + manifest_objects(RBAC_ROLES)
    created = [obj for obj in objects if not exists(cluster, *obj)]
    cluster.kubectl("apply", "-f", str(ADMISSION_POLICY), "-f", str(RBAC_ROLES))
    probe = new_namespace(cluster, "pol-probe")
    try:
        create_odb(cluster, probe, "probe", CODE)

        def enforced() -> bool:
            result = cluster.kubectl("delete", "odb", "probe", "-n", probe, "--dry-run=server", check=False)
            return result.returncode != 0 and refusal(probe, "probe") in result.stderr

        wait_until(enforced, 10, "the admission policy to be enforced")
        yield
    finally:
        drop_namespace(cluster, probe)
        for resource, name in created:
            cluster.kubectl("delete", resource, name, "--ignore-not-found", check=False)


@pytest.fixture
def ns(cluster: LocalCluster, policies: None) -> Iterator[str]:
    name = new_namespace(cluster, "pol")
    yield name
    drop_namespace(cluster, name)


# ---- manifests -----------------------------------------------------------------------------------
def test_manifests_pass_server_side_validation(cluster: LocalCluster) -> None:
    result = cluster.kubectl("apply", "--dry-run=server", "-f", str(ADMISSION_POLICY), "-f", str(RBAC_ROLES))
    assert POLICY in result.stdout
    for role in ("odoo-database-admin", "odoo-database-editor", "odoo-database-viewer"):
        assert f"clusterrole.rbac.authorization.k8s.io/{role}" in result.stdout


def test_policy_is_bound_to_deny_and_fails_closed(cluster: LocalCluster, policies: None) -> None:
    policy = get_json(cluster, "validatingadmissionpolicy", POLICY)
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert not (policy.get("status") or {}).get("typeChecking", {}).get("expressionWarnings"), policy["status"]
    binding = get_json(cluster, "validatingadmissionpolicybinding", POLICY)
    assert binding["spec"]["policyName"] == POLICY
    assert binding["spec"]["validationActions"] == ["Deny"]


# ---- admission policy ----------------------------------------------------------------------------
def test_delete_of_linked_database_is_refused_until_unlinked(cluster: LocalCluster, ns: str) -> None:
    create_odb(cluster, ns, "acme", CODE)

    assert_refused(delete_odb(cluster, ns, "acme"), ns, "acme")
    assert_kept(cluster, ns, "acme")
    # Refused for the dry run as well, and for any spelling of the resource.
    assert_refused(cluster.kubectl("delete", f"{ODB}/acme", "-n", ns, "--dry-run=server", check=False), ns, "acme")
    assert_kept(cluster, ns, "acme")
    assert get_json(cluster, "odb", "acme", "-n", ns)["spec"]["subscription"] == {"code": CODE}

    unlink(cluster, ns, "acme")
    result = delete_odb(cluster, ns, "acme")
    assert result.returncode == 0, result.stderr
    wait_deleted(cluster, ns, "acme")


def test_unlinked_database_deletes_normally(cluster: LocalCluster, ns: str) -> None:
    create_odb(cluster, ns, "scratch")
    result = delete_odb(cluster, ns, "scratch")
    assert result.returncode == 0, result.stderr
    assert "deleted" in result.stdout
    wait_deleted(cluster, ns, "scratch")


def test_delete_all_deletes_only_unlinked_databases(cluster: LocalCluster, ns: str) -> None:
    # kubectl lists, then deletes each object: each DELETE is admitted on its own.
    create_odb(cluster, ns, "a-linked", CODE)
    create_odb(cluster, ns, "b-free")

    result = cluster.kubectl("delete", "odb", "--all", "-n", ns, "--wait=false", check=False)
    assert_refused(result, ns, "a-linked")
    assert 'odoodatabase.odoo.dbmanager.io "b-free" deleted' in result.stdout
    wait_deleted(cluster, ns, "b-free")
    assert_kept(cluster, ns, "a-linked")


def test_delete_collection_checks_every_item(cluster: LocalCluster, ns: str) -> None:
    # A real DELETE on the collection (the deletecollection verb): the API server admits each item
    # as a DELETE with that item as oldObject, so the linked one is kept and the request fails.
    # (It stops at the first refused item, so only items listed before it are certainly deleted.)
    create_odb(cluster, ns, "a-free")
    create_odb(cluster, ns, "b-linked", CODE)

    result = cluster.kubectl("delete", "--raw", f"/apis/odoo.dbmanager.io/v1alpha1/namespaces/{ns}/odoodatabases",
                             check=False)
    assert_refused(result, ns, "b-linked")
    wait_deleted(cluster, ns, "a-free")
    assert_kept(cluster, ns, "b-linked")

    unlink(cluster, ns, "b-linked")
    cluster.kubectl("delete", "--raw", f"/apis/odoo.dbmanager.io/v1alpha1/namespaces/{ns}/odoodatabases")
    wait_deleted(cluster, ns, "b-linked")


def test_namespace_deletion_waits_until_the_database_is_unlinked(cluster: LocalCluster, policies: None) -> None:
    namespace = new_namespace(cluster, "pol-nsdel")
    try:
        create_odb(cluster, namespace, "a-free")
        create_odb(cluster, namespace, "b-linked", CODE)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")

        def content_failure() -> str:
            conditions = get_json(cluster, "namespace", namespace).get("status", {}).get("conditions", [])
            return next((c["message"] for c in conditions
                         if c["type"] == "NamespaceDeletionContentFailure" and c["status"] == "True"), "")

        message = wait_until(content_failure, 30, "the namespace controller to report the refusal")
        assert refusal(namespace, "b-linked") in message
        wait_deleted(cluster, namespace, "a-free")
        assert get_json(cluster, "namespace", namespace)["status"]["phase"] == "Terminating"
        assert_kept(cluster, namespace, "b-linked")

        unlink(cluster, namespace, "b-linked")  # updates are allowed in a Terminating namespace
        # The namespace controller retries (with back-off) and now gets through.
        wait_deleted(cluster, namespace, "b-linked", timeout=90)
        if not get_json(cluster, "odb", "-n", namespace).get("items"):  # no operator finalizer left
            wait_until(lambda: not exists(cluster, "namespace", namespace), 60, f"namespace {namespace} to be gone")
    finally:
        drop_namespace(cluster, namespace)


# ---- RBAC ----------------------------------------------------------------------------------------
def bind(cluster: LocalCluster, namespace: str, user: str, cluster_role: str) -> None:
    cluster.kubectl("create", "rolebinding", f"{user}-{cluster_role}", f"--clusterrole={cluster_role}",
                    f"--user={user}", "-n", namespace)


@pytest.fixture
def rbac_ns(cluster: LocalCluster, ns: str) -> str:
    """alice: edit, bob: admin, carol: view, in `ns`; waits until aggregation reached the built-in roles."""
    bind(cluster, ns, "alice", "edit")
    bind(cluster, ns, "bob", "admin")
    bind(cluster, ns, "carol", "view")
    for user, verb in (("alice", "patch"), ("bob", "delete"), ("carol", "list")):
        wait_until(lambda user=user, verb=verb: can_i(cluster, user, verb, ODB, ns), 20,
                   f"{user} to be allowed to {verb} OdooDatabases (clusterrole aggregation)")
    return ns


@pytest.mark.parametrize(("user", "verb", "resource", "allowed"), [
    ("alice", "create", ODB, True),
    ("alice", "update", ODB, True),
    ("alice", "patch", ODB, True),
    ("alice", "delete", ODB, False),
    ("alice", "deletecollection", ODB, False),
    ("alice", "delete", "databasebackups.odoo.dbmanager.io", False),
    ("alice", "delete", "domainmappings.odoo.dbmanager.io", False),
    ("alice", "create", "databasebackups.odoo.dbmanager.io", True),
    ("alice", "update", f"{ODB}/status", False),
    ("bob", "delete", ODB, True),
    ("bob", "deletecollection", ODB, True),
    ("bob", "delete", "databasebackups.odoo.dbmanager.io", True),
    ("bob", "delete", "domainmappings.odoo.dbmanager.io", True),
    ("bob", "get", f"{ODB}/status", True),
    ("bob", "update", f"{ODB}/status", False),
    ("carol", "get", ODB, True),
    ("carol", "watch", "domainmappings.odoo.dbmanager.io", True),
    ("carol", "create", ODB, False),
    ("carol", "patch", ODB, False),
    ("carol", "delete", ODB, False),
    ("mallory", "get", ODB, False),  # not bound at all
])
def test_permissions_matrix(cluster: LocalCluster, rbac_ns: str, user: str, verb: str, resource: str,
                            allowed: bool) -> None:
    assert can_i(cluster, user, verb, resource, rbac_ns) is allowed


def test_edit_role_creates_and_patches_but_cannot_delete(cluster: LocalCluster, rbac_ns: str) -> None:
    ns = rbac_ns
    created = as_user(cluster, "alice", "create", "-f", "-", input=odoo_database("alices", ns))
    assert created.returncode == 0, created.stderr
    patched = as_user(cluster, "alice", "patch", "odb", "alices", "-n", ns, "--type=merge",
                      "-p", '{"metadata": {"labels": {"team": "sales"}}}')
    assert patched.returncode == 0, patched.stderr

    refused = as_user(cluster, "alice", "delete", "odb", "alices", "-n", ns, "--wait=false")
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr and 'cannot delete resource "odoodatabases"' in refused.stderr
    refused_all = as_user(cluster, "alice", "delete", "odb", "--all", "-n", ns, "--wait=false")
    assert refused_all.returncode != 0 and "Forbidden" in refused_all.stderr
    assert_kept(cluster, ns, "alices")

    answer = cluster.kubectl("auth", "can-i", "delete", ODB, "-n", ns, "--as", "alice", check=False)
    assert answer.returncode != 0 and answer.stdout.strip() == "no"

    # bob (admin) deletes it.
    deleted = as_user(cluster, "bob", "delete", "odb", "alices", "-n", ns, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    wait_deleted(cluster, ns, "alices")


def test_admin_role_is_still_refused_a_linked_database(cluster: LocalCluster, rbac_ns: str) -> None:
    ns = rbac_ns
    create_odb(cluster, ns, "billed", CODE)
    assert_refused(as_user(cluster, "bob", "delete", "odb", "billed", "-n", ns, "--wait=false"), ns, "billed")
    # edit may unlink (patch), admin then deletes.
    unlinked = as_user(cluster, "alice", "patch", "odb", "billed", "-n", ns, "--type=json", "-p", REMOVE_SUBSCRIPTION)
    assert unlinked.returncode == 0, unlinked.stderr
    deleted = as_user(cluster, "bob", "delete", "odb", "billed", "-n", ns, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    wait_deleted(cluster, ns, "billed")


def test_view_role_reads_but_cannot_create(cluster: LocalCluster, rbac_ns: str) -> None:
    ns = rbac_ns
    create_odb(cluster, ns, "shown")
    got = as_user(cluster, "carol", "get", "odb", "shown", "-n", ns, "-o", "name")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "odoodatabase.odoo.dbmanager.io/shown"
    listed = as_user(cluster, "carol", "get", "odb,odbb,odm", "-n", ns, "-o", "name")
    assert listed.returncode == 0, listed.stderr

    created = as_user(cluster, "carol", "create", "-f", "-", input=odoo_database("carols", ns))
    assert created.returncode != 0
    assert "Forbidden" in created.stderr and 'cannot create resource "odoodatabases"' in created.stderr
    assert not exists(cluster, "odb", "carols", "-n", ns)


@contextlib.contextmanager
def admin_everywhere(cluster: LocalCluster, user: str) -> Iterator[str]:
    """`user` bound to the built-in admin role cluster-wide (a ClusterRoleBinding), removed afterwards."""
    binding = f"pol-{user}-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "clusterrolebinding", binding, "--clusterrole=admin", f"--user={user}")
    try:
        wait_until(lambda: as_user(cluster, user, "get", "pgs").returncode == 0, 20,
                   f"{user} (admin cluster-wide) to list PostgresServers")
        yield user
    finally:
        cluster.kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found", check=False)


def test_postgres_servers_are_read_only_for_every_user_role(cluster: LocalCluster, policies: None) -> None:
    # Cluster-scoped: rules only take effect through a ClusterRoleBinding.
    with admin_everywhere(cluster, "dave") as user:
        server = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "PostgresServer",
                  "metadata": {"name": f"pol-{uuid.uuid4().hex[:8]}"},
                  "spec": {"host": "127.0.0.1", "port": 5432,
                           "adminSecretRef": {"namespace": "kube-system", "name": "anything"}}}
        created = as_user(cluster, user, "create", "--dry-run=server", "-f", "-", input=json.dumps(server))
        assert created.returncode != 0
        assert 'cannot create resource "postgresservers"' in created.stderr, created.stderr

    for role in ("odoo-database-admin", "odoo-database-editor", "odoo-database-viewer"):
        rules = get_json(cluster, "clusterrole", role)["rules"]
        verbs = {verb for rule in rules for res in rule["resources"] if res.startswith("postgresservers")
                 for verb in rule["verbs"]}
        assert verbs == {"get", "list", "watch"}, (role, verbs)


def test_domain_claims_are_out_of_reach_of_every_user_role(cluster: LocalCluster, policies: None) -> None:
    """A tenant able to create or delete DomainClaims could take anyone's domain, and one able to list
    them would learn which namespace holds which domain: no user role grants them, even cluster-wide."""
    with admin_everywhere(cluster, "erin") as user:
        claim = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DomainClaim",
                 "metadata": {"name": "shop.example.com"},
                 "spec": {"domain": "shop.example.com", "mappingRef": {"namespace": "x", "name": "y", "uid": "z"}}}
        created = as_user(cluster, user, "create", "--dry-run=server", "-f", "-", input=json.dumps(claim))
        assert 'cannot create resource "domainclaims"' in created.stderr, created.stderr
        for verb in ("list", "delete"):
            assert as_user(cluster, user, verb, "domainclaims", *(["x"] if verb == "delete" else [])).returncode != 0

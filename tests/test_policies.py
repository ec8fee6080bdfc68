"""End to end: the policies shipped with the manifests, against the real kube-apiserver (RBAC on) and
kube-controller-manager (clusterrole aggregation, namespace deletion).

- manifests/admission-policy.yaml: DELETE of an OdooDatabase linked to a subscription is refused,
  one by one, with `kubectl delete --all`, with a DELETE on the collection and by namespace deletion.
- manifests/rbac-user-roles.yaml: aggregated into admin / edit / view; only admins delete.
- manifests/admission-policy-routes.yaml: a tenant (a ServiceAccount of its namespace bound to `edit`,
  using its own token) cannot route a host inside the base domain or claimed by another namespace.
- manifests/admission-policy-lifetime.yaml: unlinking, shortening expiresAfter, deletionPolicy Delete
  take the right to delete the OdooDatabase.
- manifests/admission-policy-backup-identity.yaml: only the operator's backup Jobs run as odoo-backup,
  and only a Pod-bound token of it writes DatabaseBackup status.

Independent of the operator: objects live in fresh namespaces and are never expected to be reconciled.
If an operator happens to run and adds a finalizer, a DELETE that got through admission leaves the object
with a deletionTimestamp until the operator lets go; that counts as deleted here (see `deleted`).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import get_json, install_gateway_api, odoo_database, wait_until
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster, kubectl_binary
from odoo_operator.specs.backup import REPORTER as BUILDERS_REPORTER
from odoo_operator.specs.backup import build_reporter_rbac

pytestmark = pytest.mark.e2e

MANIFESTS = REPO_ROOT / "manifests"
ADMISSION_POLICY = MANIFESTS / "admission-policy.yaml"
RBAC_ROLES = MANIFESTS / "rbac-user-roles.yaml"
ROUTES_POLICY = MANIFESTS / "admission-policy-routes.yaml"
LIFETIME_POLICY = MANIFESTS / "admission-policy-lifetime.yaml"
BACKUP_IDENTITY_POLICY = MANIFESTS / "admission-policy-backup-identity.yaml"
TENANT_POLICIES = (ROUTES_POLICY, LIFETIME_POLICY, BACKUP_IDENTITY_POLICY)
BASE_DOMAIN = "odoo.localhost"  # what the manifests are written for (the operator's default)
OPERATOR_SA = "system:serviceaccount:odoo-system:odoo-db-operator"
REPORTER = "odoo-backup"
Result = subprocess.CompletedProcess[str]
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
    install_gateway_api(cluster)  # the routes policies also match HTTPRoutes
    files = (ADMISSION_POLICY, RBAC_ROLES, *TENANT_POLICIES)
    objects = [obj for path in files for obj in manifest_objects(path)]
    created = [obj for obj in objects if not exists(cluster, *obj)]
    cluster.kubectl("apply", *(arg for path in files for arg in ("-f", str(path))))
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
    result = cluster.kubectl("apply", "--dry-run=server", "-f", str(ADMISSION_POLICY), "-f", str(RBAC_ROLES),
                             *(arg for path in TENANT_POLICIES for arg in ("-f", str(path))))
    assert POLICY in result.stdout
    for role in ("odoo-database-admin", "odoo-database-editor", "odoo-database-viewer"):
        assert f"clusterrole.rbac.authorization.k8s.io/{role}" in result.stdout
    for path in TENANT_POLICIES:
        for _, name in manifest_objects(path):
            assert f"/{name} " in result.stdout, name


def test_reporter_name_matches_the_operator() -> None:
    """The backup-identity policies name the operator's backup ServiceAccount literally."""
    assert BUILDERS_REPORTER == REPORTER
    assert f"'{REPORTER}'" in BACKUP_IDENTITY_POLICY.read_text()


@pytest.mark.parametrize("path", [ADMISSION_POLICY, *TENANT_POLICIES], ids=lambda p: p.name)
def test_policies_are_bound_to_deny_fail_closed_and_type_check(cluster: LocalCluster, policies: None,
                                                               path: Path) -> None:
    names = [name for resource, name in manifest_objects(path) if resource == "validatingadmissionpolicy"]
    assert names
    for name in names:
        policy = get_json(cluster, "validatingadmissionpolicy", name)
        assert policy["spec"]["failurePolicy"] == "Fail", name
        # Type-checked against the real schemas (Ingress, HTTPRoute, DomainClaim, OdooDatabase, ...).
        status = wait_until(lambda name=name: get_json(cluster, "validatingadmissionpolicy", name).get("status"),
                            10, f"{name} to be type-checked")
        assert not status.get("typeChecking", {}).get("expressionWarnings"), (name, status)
        binding = get_json(cluster, "validatingadmissionpolicybinding", name)
        assert binding["spec"]["policyName"] == name
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
    ("alice", "patch", "databasebackups.odoo.dbmanager.io/status", False),
    ("alice", "update", "domainmappings.odoo.dbmanager.io/status", False),
    ("bob", "patch", "databasebackups.odoo.dbmanager.io/status", False),
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
    # edit may not unlink (admission-policy-lifetime.yaml); admin unlinks, then deletes.
    refused = as_user(cluster, "alice", "patch", "odb", "billed", "-n", ns, "--type=json", "-p", REMOVE_SUBSCRIPTION)
    assert refused.returncode != 0 and "Removing spec.subscription" in refused.stderr, refused.stderr
    unlinked = as_user(cluster, "bob", "patch", "odb", "billed", "-n", ns, "--type=json", "-p", REMOVE_SUBSCRIPTION)
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


# ---- tenants: a ServiceAccount of the namespace bound to `edit`, with its own token ------------------
class Tenant:
    """kubectl with a tenant's real credentials (a token of ServiceAccount `name` in `namespace`, bound
    to the built-in `edit` role there): what a hostile tenant would run. No impersonation by an admin,
    so what `edit` itself allows (e.g. impersonating the namespace's ServiceAccounts) is what counts."""

    def __init__(self, cluster: LocalCluster, namespace: str, directory: Path, name: str = "tenant") -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.user = f"system:serviceaccount:{namespace}:{name}"
        cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
        cluster.kubectl("create", "rolebinding", f"{name}-edit", "--clusterrole=edit",
                        f"--serviceaccount={namespace}:{name}", "-n", namespace)
        # The built-in roles grant no Gateway API objects; a platform letting tenants write HTTPRoutes
        # aggregates or binds a role like this one.
        cluster.kubectl("create", "role", f"{name}-routes", "--verb=get,list,create,update,patch,delete",
                        "--resource=httproutes.gateway.networking.k8s.io", "-n", namespace)
        cluster.kubectl("create", "rolebinding", f"{name}-routes", f"--role={name}-routes",
                        f"--serviceaccount={namespace}:{name}", "-n", namespace)
        token = cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
        self.kubeconfig = token_kubeconfig(cluster, token, directory / f"{namespace}-{name}.kubeconfig")
        wait_until(lambda: can_i(cluster, self.user, "patch", ODB, namespace), 20,
                   f"{self.user} to be allowed to patch OdooDatabases (clusterrole aggregation)")

    def kubectl(self, *args: str, input: str | None = None) -> Result:
        return kubectl_as(self.cluster, self.kubeconfig, "-n", self.namespace, *args, input=input)


def token_kubeconfig(cluster: LocalCluster, token: str, path: Path) -> Path:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def kubectl_as(cluster: LocalCluster, kubeconfig: Path, *args: str, input: str | None = None) -> Result:
    """kubectl with another kubeconfig (another user's credentials)."""
    return subprocess.run([kubectl_binary(), f"--kubeconfig={kubeconfig}", *args], input=input, text=True,
                          capture_output=True, timeout=60)


@pytest.fixture
def tenant(cluster: LocalCluster, ns: str, tmp_path: Path) -> Tenant:
    return Tenant(cluster, ns, tmp_path)


@pytest.fixture
def neighbour(cluster: LocalCluster, policies: None) -> Iterator[str]:
    """Another tenant's namespace (holder of DomainClaims)."""
    name = new_namespace(cluster, "pol-other")
    yield name
    drop_namespace(cluster, name)


@pytest.fixture
def claims(cluster: LocalCluster) -> Iterator[Any]:
    """claim(domain, namespace): a DomainClaim as the operator writes it; all removed afterwards."""
    made: list[str] = []

    def claim(domain: str, namespace: str) -> None:
        name = f"wildcard.{domain[2:]}" if domain.startswith("*.") else domain
        body = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DomainClaim",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "odoo-db-operator"}},
                "spec": {"domain": domain, "mappingRef": {"kind": "DomainMapping", "namespace": namespace,
                                                          "name": "m", "uid": uuid.uuid4().hex}}}
        cluster.kubectl("create", "-f", "-", input=json.dumps(body))
        made.append(name)

    yield claim
    for name in made:
        cluster.kubectl("delete", "domainclaim", name, "--ignore-not-found", check=False)


def ingress(name: str, *hosts: str, tls: tuple[str, ...] = (), alias: str | None = None,
            default_backend: bool = False) -> str:
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    rules = [{**({"host": host} if host else {}),
              "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}} for host in hosts]
    spec: dict[str, Any] = {"rules": rules} if rules else {}
    if tls:
        spec["tls"] = [{"hosts": list(tls), "secretName": "cert"}]
    if default_backend:
        spec["defaultBackend"] = backend
    metadata: dict[str, Any] = {"name": name}
    if alias:
        metadata["annotations"] = {"nginx.ingress.kubernetes.io/server-alias": alias}
    return json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": spec})


def httproute(name: str, *hostnames: str, gateway_namespace: str | None = "platform") -> str:
    parent = {"name": "public", **({"namespace": gateway_namespace} if gateway_namespace else {})}
    spec: dict[str, Any] = {"parentRefs": [parent],
                            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}
    if hostnames:
        spec["hostnames"] = list(hostnames)
    return json.dumps({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                       "metadata": {"name": name}, "spec": spec})


def assert_denied(result: Result, policy: str, *texts: str, or_claimed: bool = False) -> None:
    assert result.returncode != 0, result.stdout
    assert "forbidden" in result.stderr.lower(), result.stderr
    if or_claimed and f"ValidatingAdmissionPolicy '{policy}'" not in result.stderr:
        # The API server reports the first policy that refuses: a base-domain host that also covers a
        # name another namespace of this session cluster holds may be refused for that first.
        assert "is claimed by another namespace" in result.stderr and "claimed-hosts'" in result.stderr, result.stderr
        return
    assert f"ValidatingAdmissionPolicy '{policy}'" in result.stderr, result.stderr
    for text in texts:
        assert text in result.stderr, (text, result.stderr)


def denied_eventually(attempt: Any, policy: str, *texts: str, or_claimed: bool = False) -> None:
    """The policy (or a DomainClaim it takes as params) may need a moment to reach the API server's
    informers: retry a dry run until refused, then the real request must be refused too."""
    wait_until(lambda: attempt(dry_run=True).returncode != 0, 10, f"{policy} to refuse")
    assert_denied(attempt(dry_run=True), policy, *texts, or_claimed=or_claimed)
    assert_denied(attempt(dry_run=False), policy, *texts, or_claimed=or_claimed)


def create(who: Tenant, body: str, dry_run: bool = False) -> Result:
    return who.kubectl("create", "-f", "-", *(["--dry-run=server"] if dry_run else []), input=body)


# ---- routes: base domain -------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "kwargs"), [
    (f"shop.{BASE_DOMAIN}", {}),                        # another tenant's database (or a future one)
    (f"*.{BASE_DOMAIN}", {}),                           # every database
    (f"*.a.{BASE_DOMAIN}", {}),
    (BASE_DOMAIN, {}),
    ("*.localhost", {}),                                # a wildcard covering the base domain
    (f"SHOP.{BASE_DOMAIN}", {"via": "alias"}),          # ingress-nginx's extra server names
    (f"shop.{BASE_DOMAIN}", {"via": "tls"}),
], ids=lambda v: v if isinstance(v, str) else v.get("via", "rule"))
def test_tenant_cannot_route_a_host_inside_the_base_domain(tenant: Tenant, host: str, kwargs: dict[str, str]) -> None:
    via = kwargs.get("via")
    body = (ingress("steal", "mine.example.com", alias=f"mine2.example.com, {host}") if via == "alias" else
            ingress("steal", "mine.example.com", tls=(host,)) if via == "tls" else ingress("steal", host))
    denied_eventually(lambda dry_run: create(tenant, body, dry_run), "odoo-ingress-hosts",
                      f"host {host.lower()} ", f"lies inside the platform's base domain {BASE_DOMAIN}",
                      f"Ingress {tenant.namespace}/steal", or_claimed=True)
    assert not exists(tenant.cluster, "ingress", "steal", "-n", tenant.namespace)


def test_tenant_cannot_take_over_the_operators_ingress(cluster: LocalCluster, tenant: Tenant) -> None:
    """The Ingress the operator made for the tenant's own database may not be pointed at another host."""
    ns = tenant.namespace
    # As the operator would.
    cluster.kubectl("create", "-n", ns, "-f", "-", input=ingress("mine", f"mine.{BASE_DOMAIN}"))
    patch = json.dumps([{"op": "replace", "path": "/spec/rules/0/host", "value": f"victim.{BASE_DOMAIN}"}])
    denied_eventually(lambda dry_run: tenant.kubectl("patch", "ingress", "mine", "--type=json", "-p", patch,
                                                     *(["--dry-run=server"] if dry_run else [])),
                      "odoo-ingress-hosts", f"host victim.{BASE_DOMAIN} ")
    assert get_json(cluster, "ingress", "mine", "-n", ns)["spec"]["rules"][0]["host"] == f"mine.{BASE_DOMAIN}"


def test_tenant_cannot_route_every_host(tenant: Tenant) -> None:
    denied_eventually(lambda dry_run: create(tenant, ingress("catchall", ""), dry_run), "odoo-ingress-hosts",
                      "a rule without host (spec.rules[].host) matches every host")
    denied_eventually(lambda dry_run: create(tenant, ingress("fallback", default_backend=True), dry_run),
                      "odoo-ingress-hosts", "spec.defaultBackend serves every host")
    # An HTTPRoute without hostnames takes every hostname of the (platform's) Gateway it attaches to.
    denied_eventually(lambda dry_run: create(tenant, httproute("catchall"), dry_run), "odoo-route-hosts",
                      "without spec.hostnames attached to a Gateway of another namespace")
    # On a Gateway of its own namespace, that is the namespace's own business.
    own = create(tenant, httproute("own-gateway", gateway_namespace=None))
    assert own.returncode == 0, own.stderr


@pytest.mark.parametrize("host", [f"shop.{BASE_DOMAIN}", f"*.{BASE_DOMAIN}"])
def test_tenant_cannot_give_an_httproute_a_base_domain_hostname(tenant: Tenant, host: str) -> None:
    denied_eventually(lambda dry_run: create(tenant, httproute("steal", host), dry_run), "odoo-route-hosts",
                      f"HTTPRoute {tenant.namespace}/steal: hostname {host} (spec.hostnames) lies inside the"
                      f" platform's base domain {BASE_DOMAIN}", or_claimed=True)


# ---- routes: DomainClaims of other namespaces ----------------------------------------------------
@pytest.mark.parametrize(("claimed", "host"), [
    ("shop.example.com", "shop.example.com"),           # the same name
    ("shop.example.com", "*.example.com"),              # a wildcard covering the claimed name
    ("*.wild.example.net", "a.wild.example.net"),       # a name covered by a wildcard claim
    ("*.wild.example.net", "*.x.wild.example.net"),
    ("*.wild.example.net", "*.wild.example.net"),
])
def test_tenant_cannot_route_a_host_claimed_by_another_namespace(tenant: Tenant, neighbour: str, claims: Any,
                                                                 claimed: str, host: str) -> None:
    # Under a domain of this test's own: claims other tests of the session hold (shop-….example.com)
    # would be covered by the wildcards too, and refused first.
    claimed, host = (name.replace("example.", f"{tenant.namespace}.example.") for name in (claimed, host))
    claims(claimed, neighbour)
    claim_name = claimed.replace("*.", "wildcard.", 1)
    for kind, body, policy in (("Ingress", ingress("steal", host), "odoo-ingress-claimed-hosts"),
                               ("HTTPRoute", httproute("steal", host), "odoo-route-claimed-hosts")):
        denied_eventually(lambda dry_run, body=body: create(tenant, body, dry_run), policy,
                          f"{kind} {tenant.namespace}/steal: ", f"{host} ", "is claimed by another namespace",
                          f"(DomainClaim {claim_name}, domain {claimed})")
        # Tenants must not learn of each other: the holder's namespace is never named.
        assert neighbour not in create(tenant, body, dry_run=True).stderr
    assert not exists(tenant.cluster, "ingress", "steal", "-n", tenant.namespace)


def test_tenant_routes_its_own_claimed_hosts_and_free_hosts(cluster: LocalCluster, tenant: Tenant, neighbour: str,
                                                           claims: Any) -> None:
    claims("shop.example.com", neighbour)
    claims("own.example.org", tenant.namespace)
    claims("*.own-wild.example.org", tenant.namespace)
    # Wait until the claims are the policies' params (the neighbour's refuses), then the own ones pass.
    denied_eventually(lambda dry_run: create(tenant, ingress("probe", "shop.example.com"), dry_run),
                      "odoo-ingress-claimed-hosts", "shop.example.com")
    for name, host in (("own", "own.example.org"), ("own-wild", "a.own-wild.example.org"),
                       ("free", "free.example.io")):
        result = create(tenant, ingress(name, host, tls=(host,)))
        assert result.returncode == 0, result.stderr
        result = create(tenant, httproute(name, host))
        assert result.returncode == 0, result.stderr


def test_operator_service_account_routes_any_host(cluster: LocalCluster, tenant: Tenant, neighbour: str,
                                                  claims: Any) -> None:
    """Not checked for the operator: it routes every database's host once it holds the claim."""
    ns = tenant.namespace
    cluster.kubectl("create", "rolebinding", "operator-edit", "--clusterrole=edit", f"--user={OPERATOR_SA}", "-n", ns)
    cluster.kubectl("create", "rolebinding", "operator-routes", f"--role={tenant.name}-routes", f"--user={OPERATOR_SA}",
                    "-n", ns)
    claims(f"shop.{BASE_DOMAIN}", ns)
    claims("custom.example.com", neighbour)
    denied_eventually(lambda dry_run: create(tenant, ingress("probe", "custom.example.com"), dry_run),
                      "odoo-ingress-claimed-hosts", "custom.example.com")

    def as_operator(*args: str, input: str) -> Any:
        return cluster.kubectl(f"--as={OPERATOR_SA}", "--as-group=system:serviceaccounts",
                               "--as-group=system:authenticated", "-n", ns, *args, input=input, check=False)

    wait_until(lambda: as_operator("create", "--dry-run=server", "-f", "-",
                                   input=ingress("x", "free.example.io")).returncode == 0, 20, "RBAC")
    for name, host in (("db", f"shop.{BASE_DOMAIN}"), ("mapping", "custom.example.com")):
        result = as_operator("create", "-f", "-", input=ingress(name, host))
        assert result.returncode == 0, result.stderr
        result = as_operator("create", "-f", "-", input=httproute(name, host))
        assert result.returncode == 0, result.stderr


def test_cert_manager_solver_may_route_a_database_host(cluster: LocalCluster, tenant: Tenant) -> None:
    """cert-manager's HTTP-01 solver serves /.well-known/acme-challenge/ on the host it validates, a
    database's own host included: its user is exempted (and no one else's, the tenant's included)."""
    ns, solver = tenant.namespace, "system:serviceaccount:cert-manager:cert-manager"
    cluster.kubectl("create", "rolebinding", "solver-edit", "--clusterrole=edit", f"--user={solver}", "-n", ns)
    wait_until(lambda: can_i(cluster, solver, "create", "ingresses.networking.k8s.io", ns), 20, "RBAC")
    body = ingress("cm-acme-http-solver", f"shop.{BASE_DOMAIN}")
    denied_eventually(lambda dry_run: create(tenant, body, dry_run), "odoo-ingress-hosts", f"shop.{BASE_DOMAIN}")
    result = cluster.kubectl(f"--as={solver}", "--as-group=system:serviceaccounts", "--as-group=system:authenticated",
                             "-n", ns, "create", "-f", "-", input=body, check=False)
    assert result.returncode == 0, result.stderr


def test_platform_namespaces_can_be_exempted(cluster: LocalCluster, tenant: Tenant) -> None:
    """A namespace labelled odoo.dbmanager.io/unrestricted-routes=true (only cluster admins label
    Namespaces) is not checked; the tenant cannot set the label itself."""
    label = "odoo.dbmanager.io/unrestricted-routes=true"
    refused = tenant.kubectl("label", "namespace", tenant.namespace, label)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    body = ingress("platform", f"status.{BASE_DOMAIN}")
    denied_eventually(lambda dry_run: create(tenant, body, dry_run), "odoo-ingress-hosts", f"status.{BASE_DOMAIN}")
    cluster.kubectl("label", "namespace", tenant.namespace, label)
    wait_until(lambda: create(tenant, body, dry_run=True).returncode == 0, 10, "the exemption")
    assert create(tenant, body).returncode == 0


# ---- lifetime ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("patch", "message"), [
    ([{"op": "remove", "path": "/spec/subscription"}],
     "Removing spec.subscription (subscription M2401010000001) of OdooDatabase {ns}/life is refused"),
    ([{"op": "replace", "path": "/spec/expiresAfter", "value": "1s"}],
     'Changing spec.expiresAfter of OdooDatabase {ns}/life from "1d12h" to "1s" is refused'),
    ([{"op": "replace", "path": "/spec/expiresAfter", "value": "35h59m59s"}],
     'from "1d12h" to "35h59m59s" is refused'),
    ([{"op": "replace", "path": "/spec/deletionPolicy", "value": "Delete"}],
     "Changing spec.deletionPolicy of OdooDatabase {ns}/life from Retain to Delete is refused"),
], ids=["unlink", "expire-now", "one-second-less", "deletion-policy"])
def test_editor_cannot_bring_deletion_forward(cluster: LocalCluster, tenant: Tenant, patch: list[Any],
                                             message: str) -> None:
    ns = tenant.namespace
    cluster.kubectl("create", "-f", "-", input=odoo_database("life", ns, subscription={"code": CODE},
                                                             expiresAfter="1d12h", deletionPolicy="Retain"))
    body = json.dumps(patch)
    denied_eventually(lambda dry_run: tenant.kubectl("patch", "odb", "life", "--type=json", "-p", body,
                                                     *(["--dry-run=server"] if dry_run else [])),
                      "odoo-database-protected-lifetime", message.format(ns=ns),
                      f"which {tenant.user} does not have")
    spec = get_json(cluster, "odb", "life", "-n", ns)["spec"]
    assert (spec["subscription"], spec["expiresAfter"], spec["deletionPolicy"]) == ({"code": CODE}, "1d12h", "Retain")
    # An admin of the namespace (who may delete it anyway) may.
    bind(cluster, ns, "bob", "admin")
    wait_until(lambda: can_i(cluster, "bob", "delete", ODB, ns), 20, "bob to be an admin")
    allowed = as_user(cluster, "bob", "patch", "odb", "life", "-n", ns, "--type=json", "-p", body)
    assert allowed.returncode == 0, allowed.stderr


def test_editor_may_lengthen_a_life_and_change_the_rest(cluster: LocalCluster, tenant: Tenant) -> None:
    ns = tenant.namespace
    cluster.kubectl("create", "-f", "-", input=odoo_database("life", ns, subscription={"code": CODE},
                                                             expiresAfter="36h", deletionPolicy="Retain"))
    for patch in ({"spec": {"expiresAfter": "1d12h"}},          # the same duration, spelled differently
                  {"spec": {"expiresAfter": "999999d"}},  # the longest the CRD accepts
                  {"spec": {"expiresAfter": None}},               # never expires (not a duplicate)
                  {"spec": {"deletionPolicy": "Snapshot"}},
                  {"spec": {"subscription": {"code": "M2401010000002"}}},
                  {"metadata": {"labels": {"team": "sales"}}}):
        result = tenant.kubectl("patch", "odb", "life", "--type=merge", "-p", json.dumps(patch))
        assert result.returncode == 0, (patch, result.stderr)
    # Creating a database with a short life is not restricted: it is a new database.
    created = tenant.kubectl("create", "-f", "-", input=odoo_database("brief", ns, expiresAfter="1h"))
    assert created.returncode == 0, created.stderr


# ---- the backup Jobs' identity -------------------------------------------------------------------
def pod_body(name: str, owner: dict[str, Any] | None = None) -> str:
    metadata: dict[str, Any] = {"name": name, **({"ownerReferences": [owner]} if owner else {})}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                       "spec": {"serviceAccountName": REPORTER, "containers": [{"name": "c", "image": "busybox"}]}})


def job_body(name: str) -> str:
    return json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                       "spec": {"template": {"spec": {"serviceAccountName": REPORTER, "restartPolicy": "Never",
                                                      "containers": [{"name": "c", "image": "busybox"}]}}}})


def cronjob_body(name: str, service_account: str = REPORTER) -> str:
    job = json.loads(job_body(name))["spec"]
    job["template"]["spec"]["serviceAccountName"] = service_account
    return json.dumps({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
                       "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": job}}})


@pytest.fixture
def reporter(cluster: LocalCluster, tenant: Tenant) -> str:
    """The operator's odoo-backup ServiceAccount, Role and RoleBinding in the tenant's namespace."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                         "items": build_reporter_rbac(tenant.namespace)}))
    return tenant.namespace


def test_tenant_cannot_run_anything_as_the_backup_service_account(cluster: LocalCluster, tenant: Tenant,
                                                                  reporter: str) -> None:
    ns = tenant.namespace
    denied_eventually(lambda dry_run: create(tenant, pod_body("sneaky"), dry_run), "odoo-backup-identity-pods",
                      f"Pod {ns}/sneaky: spec.serviceAccountName odoo-backup")
    denied_eventually(lambda dry_run: create(tenant, job_body("sneaky"), dry_run), "odoo-backup-identity-jobs",
                      f"Job {ns}/sneaky: spec.template.spec.serviceAccountName odoo-backup")
    denied_eventually(lambda dry_run: create(tenant, cronjob_body("sneaky"), dry_run), "odoo-backup-identity-cronjobs",
                      f"CronJob {ns}/sneaky: spec.jobTemplate.spec.template.spec.serviceAccountName odoo-backup")
    # A forged owner reference does not help: only the Job controller creates such Pods.
    forged = pod_body("forged", {"apiVersion": "batch/v1", "kind": "Job", "name": "x", "uid": "1", "controller": True})
    assert_denied(create(tenant, forged), "odoo-backup-identity-pods", f"Pod {ns}/forged")
    # Nor a token for it (`edit` may request tokens for its namespace's ServiceAccounts).
    assert_denied(tenant.kubectl("create", "token", REPORTER), "odoo-backup-token-requests",
                  f"A token for the ServiceAccount {ns}/odoo-backup (serviceaccounts/token) is refused")
    # Nor switching a CronJob of its own to it.
    assert create(tenant, cronjob_body("mine", service_account="default")).returncode == 0
    patch = json.dumps([{"op": "replace", "path": "/spec/jobTemplate/spec/template/spec/serviceAccountName",
                         "value": REPORTER}])
    assert_denied(tenant.kubectl("patch", "cronjob", "mine", "--type=json", "-p", patch),
                  "odoo-backup-identity-cronjobs", f"CronJob {ns}/mine")
    for kind in ("pod", "job"):
        assert not exists(cluster, kind, "sneaky", "-n", ns)


def test_operator_jobs_still_run_as_the_backup_service_account(cluster: LocalCluster, tenant: Tenant,
                                                               reporter: str) -> None:
    ns = tenant.namespace
    cluster.kubectl("create", "rolebinding", "operator-edit", "--clusterrole=edit", f"--user={OPERATOR_SA}", "-n", ns)
    as_operator = (f"--as={OPERATOR_SA}", "--as-group=system:serviceaccounts", "--as-group=system:authenticated")
    wait_until(lambda: can_i(cluster, OPERATOR_SA, "create", "jobs.batch", ns), 20, "RBAC")
    for body in (job_body("backup"), cronjob_body("daily")):
        result = cluster.kubectl(*as_operator, "create", "-n", ns, "-f", "-", input=body, check=False)
        assert result.returncode == 0, result.stderr
    # kube-controller-manager's Job controller creates the Pod (as system:masters here: exempt too).
    wait_until(lambda: get_json(cluster, "pods", "-n", ns, "-l", "job-name=backup").get("items"), 30,
               "the Job's Pod")
    # The Job controller of a cluster with --use-service-account-credentials: allowed for a Pod its Job
    # controls, refused without.
    controller = "system:serviceaccount:kube-system:job-controller"
    cluster.kubectl("create", "rolebinding", "job-controller-edit", "--clusterrole=edit", f"--user={controller}",
                    "-n", ns)
    wait_until(lambda: can_i(cluster, controller, "create", "pods", ns), 20, "RBAC")
    job = get_json(cluster, "job", "backup", "-n", ns)
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "backup", "uid": job["metadata"]["uid"],
             "controller": True}
    as_controller = (f"--as={controller}", "--as-group=system:serviceaccounts", "--as-group=system:authenticated")
    allowed = cluster.kubectl(*as_controller, "create", "-n", ns, "--dry-run=server", "-f", "-",
                              input=pod_body("backup-x", owner), check=False)
    assert allowed.returncode == 0, allowed.stderr
    refused = cluster.kubectl(*as_controller, "create", "-n", ns, "--dry-run=server", "-f", "-",
                              input=pod_body("backup-y"), check=False)
    assert_denied(refused, "odoo-backup-identity-pods", f"Pod {ns}/backup-y")


def test_tenant_cannot_forge_backup_status(cluster: LocalCluster, tenant: Tenant, reporter: str,
                                           tmp_path: Path) -> None:
    ns = tenant.namespace
    backup = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DatabaseBackup", "metadata": {"name": "nightly"},
              "spec": {"databaseRef": {"name": "shop"}}}
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(backup))
    forged = json.dumps({"status": {"phase": "Forged"}})

    def write_status(*extra: str, kubeconfig: Path | None = None) -> Result:
        return kubectl_as(cluster, kubeconfig or tenant.kubeconfig, "-n", ns, *extra, "patch", "databasebackup",
                          "nightly", "--subresource=status", "--type=merge", "-p", forged)

    # `edit` has no status rights of ours ...
    direct = write_status()
    assert direct.returncode != 0 and 'cannot patch resource "databasebackups/status"' in direct.stderr, direct.stderr
    # ... but may impersonate the namespace's ServiceAccounts, odoo-backup included: refused by admission.
    reporter_user = f"system:serviceaccount:{ns}:{REPORTER}"
    impersonated = write_status(f"--as={reporter_user}")
    assert_denied(impersonated, "odoo-backup-status-writer",
                  f"DatabaseBackup {ns}/nightly: status written as {reporter_user} without a Pod-bound token")
    # A token that is not bound to a Pod (TokenRequest by an admin, as a legacy Secret would be) is refused too.
    unbound = cluster.kubectl("create", "token", REPORTER, "-n", ns).stdout.strip()
    assert_denied(write_status(kubeconfig=token_kubeconfig(cluster, unbound, tmp_path / "unbound")),
                  "odoo-backup-status-writer", "without a Pod-bound token")
    assert get_json(cluster, "databasebackup", "nightly", "-n", ns).get("status", {}).get("phase") != "Forged"

    # The real reporter: a backup Job's Pod with its kubelet-issued (Pod-bound) token.
    cluster.kubectl("create", "-n", ns, "-f", "-", input=job_body("backup"))  # as an admin, i.e. the operator
    pod = wait_until(lambda: (get_json(cluster, "pods", "-n", ns, "-l", "job-name=backup").get("items") or [None])[0],
                     30, "the Job's Pod")
    bound = cluster.kubectl("create", "token", REPORTER, "-n", ns, "--bound-object-kind=Pod",
                            f"--bound-object-name={pod['metadata']['name']}",
                            f"--bound-object-uid={pod['metadata']['uid']}").stdout.strip()
    reported = kubectl_as(cluster, token_kubeconfig(cluster, bound, tmp_path / "bound"), "-n", ns, "patch",
                          "databasebackup", "nightly", "--subresource=status", "--type=merge",
                          "-p", json.dumps({"status": {"phase": "Reported"}}))
    assert reported.returncode == 0, reported.stderr
    assert get_json(cluster, "databasebackup", "nightly", "-n", ns)["status"]["phase"] == "Reported"

"""Every Odoo-facing step on a real Odoo (issue 10).

The namespace of this module is a "real" one: its Pods are scheduled on the node runner's node and run
as local processes (the official image's semantics reproduced), not faked by kwok. So the init Job
really runs `odoo -i base`, the app really serves `/web/login` and `/websocket`, the neutralize Job
really runs `odoo neutralize`, and the backup Job really writes a ZIP. HTTP goes through the local
Ingress proxy, which routes by the Ingress rules the operator wrote, as an ingress controller would.

One database (`shop`) is initialised for real; the others are duplicates of it (each a real path of its
own), which keeps the module within a few minutes on 2 cores.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from conftest import apply_yaml, condition, get_json, pg_query, wait_until
from odoo_operator.devtools.localcluster import LocalCluster
from odoo_real import DirectOdoo, authenticate, json_rpc, odoo_series, request, volume_dir, websocket_handshake

# Real inits and module installs: minutes, not seconds, on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(900)]

SERIES = odoo_series()
READY_TIMEOUT = 900  # a real `odoo -i base` on a loaded 2-core machine


def secret_value(cluster: LocalCluster, namespace: str, name: str, key: str) -> str:
    data = get_json(cluster, "secret", name, "-n", namespace)["data"]
    return base64.b64decode(data[key]).decode()


def odb(name: str, namespace: str, server: str, **spec: Any) -> str:
    body = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "OdooDatabase",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"version": SERIES, "server": server, **spec}}
    return yaml.safe_dump(body)


def wait_ready(cluster: LocalCluster, namespace: str, name: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj = get_json(cluster, "odb", name, "-n", namespace)
        cond = condition(obj, "Ready")
        if cond.get("reason") in ("InitFailed", "NeutralizeFailed", "RestoreFailed"):
            raise AssertionError(f"{name}: {cond}")
        return obj if cond.get("status") == "True" else None

    return dict(wait_until(ready, timeout, f"OdooDatabase {name} Ready", interval=1))


def database_name(cluster: LocalCluster, namespace: str, name: str) -> str:
    return str(get_json(cluster, "odb", name, "-n", namespace)["status"]["databaseName"])


def host_of(cluster: LocalCluster, namespace: str, name: str) -> str:
    url = get_json(cluster, "odb", name, "-n", namespace)["status"]["url"]
    return str(url.split("://", 1)[1].split("/", 1)[0])


@pytest.fixture(scope="module")
def real_ns(cluster: LocalCluster, operator: Any, pods_server: str) -> Iterator[str]:
    name = f"real-{uuid.uuid4().hex[:6]}"
    cluster.real_namespace(name)
    yield name
    cluster.kubectl("delete", "odb", "--all", "-n", name, "--timeout=180s", check=False, timeout=240)


@pytest.fixture(scope="module")
def shop(cluster: LocalCluster, real_ns: str, pods_server: str) -> str:
    """The one database initialised by the real init Job (`odoo -i base`, then the admin password)."""
    apply_yaml(cluster, odb("shop", real_ns, pods_server, app={"replicas": 1, "workers": 0}))
    wait_ready(cluster, real_ns, "shop")
    return "shop"


def test_init_gives_an_admin_with_the_generated_password(cluster: LocalCluster, real_ns: str, shop: str,
                                                          ingress_proxy: Any) -> None:
    host, db = host_of(cluster, real_ns, shop), database_name(cluster, real_ns, shop)
    password = secret_value(cluster, real_ns, "shop-admin", "password")
    answer, _ = authenticate(ingress_proxy.port, host, db, "admin", password)
    assert answer.get("result", {}).get("uid") == 2, answer
    # Odoo's default admin/admin does not open it.
    answer, _ = authenticate(ingress_proxy.port, host, db, "admin", "admin")
    assert "error" in answer and "result" not in answer, answer


def test_login_page_on_the_host_and_a_mapped_domain_and_no_other_database(
        cluster: LocalCluster, real_ns: str, shop: str, ingress_proxy: Any, pg_dsn: str) -> None:
    host, db = host_of(cluster, real_ns, shop), database_name(cluster, real_ns, shop)
    page = request(ingress_proxy.port, host, "GET", "/web/login")
    assert page.status == 200 and b'name="login"' in page.body, page.body[:300]

    domain = f"shop-{uuid.uuid4().hex[:6]}.example.com"
    apply_yaml(cluster, yaml.safe_dump({
        "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DomainMapping",
        "metadata": {"name": "shop-domain", "namespace": real_ns},
        "spec": {"domain": domain, "databaseRef": {"name": shop}}}))
    wait_until(lambda: condition(get_json(cluster, "odm", "shop-domain", "-n", real_ns), "Ready")
               .get("status") == "True", 120, "the DomainMapping Ready")
    page = wait_until(lambda: (r := request(ingress_proxy.port, domain, "GET", "/web/login")).status == 200 and r,
                      30, "the login page on the mapped domain")
    assert b'name="login"' in page.body

    # Only its own database: the database list is closed, another database on the same server is refused.
    assert pg_query(pg_dsn, "SELECT 1 FROM pg_database WHERE datname = 'postgres'")
    listing = json_rpc(ingress_proxy.port, host, "/web/database/list", {}).json()
    assert "error" in listing, listing
    password = secret_value(cluster, real_ns, "shop-admin", "password")
    answer, _ = authenticate(ingress_proxy.port, host, "postgres", "admin", password)
    assert "error" in answer, answer
    # An unknown host reaches no Odoo at all.
    assert request(ingress_proxy.port, f"nobody-{db}.example.org", "GET", "/web/login").status == 404


def test_ssl_mode_require_is_applied_to_odoo(cluster: LocalCluster, tmp_path: Path) -> None:
    """The operator's odoo.conf carries the PostgresServer's sslMode: under `require`, Odoo refuses a
    server without SSL instead of silently connecting in clear (what PGSSLMODE alone gave); the same
    conf with `disable` connects, so the refusal is the sslMode's doing."""
    import subprocess

    from odoo_operator import specs
    from odoo_operator.api.model import parse_odoo_database
    from odoo_operator.config import Settings
    from odoo_real import ODOO_BIN, ODOO_PYTHON

    assert cluster.postgres is not None
    body = yaml.safe_load(odb("ssl", "default", "x"))
    body["metadata"]["uid"] = str(uuid.uuid4())
    db = parse_odoo_database(body, Settings())
    conf = specs.app.render_odoo_conf(db, specs.app.DatabaseEndpoint(
        host="127.0.0.1", port=cluster.postgres.port, ssl_mode="require"))
    assert "db_sslmode = require" in conf and "db_password" not in conf
    conf = conf.replace(f"db_user = {db.role_name}", f"db_user = {cluster.postgres.user}")
    conf = conf.replace("/var/lib/odoo", str(tmp_path / "data"))

    def connect(text: str) -> str:
        (tmp_path / "odoo.conf").write_text(text)
        # Odoo's own connection code (odoo.sql_db, as the server uses it) with that conf.
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import odoo; "
                "odoo.tools.config.parse_config(['-c', sys.argv[2]]); "
                "cr = odoo.sql_db.db_connect('postgres').cursor(); cr.execute('SELECT 1'); print('CONNECTED')")
        result = subprocess.run(
            [str(ODOO_PYTHON), "-c", code, str(ODOO_BIN.parent), str(tmp_path / "odoo.conf")],
            env={"PGPASSWORD": cluster.postgres.password, "PATH": "/usr/bin:/bin"},  # type: ignore[union-attr]
            capture_output=True, text=True, timeout=300)
        return result.stdout + result.stderr

    refused = connect(conf)
    assert "CONNECTED" not in refused and "server does not support SSL" in refused, refused[-2000:]
    assert "CONNECTED" in connect(conf.replace("db_sslmode = require", "db_sslmode = disable"))


def test_websocket_through_the_routed_port_with_0_and_2_workers(
        cluster: LocalCluster, real_ns: str, shop: str, ingress_proxy: Any) -> None:
    host = host_of(cluster, real_ns, shop)
    status, head = websocket_handshake(ingress_proxy.port, host)
    assert status == 101, head

    # A second database, duplicated from shop, in prefork mode: /websocket must reach the gevent port.
    apply_yaml(cluster, odb("shop-workers", real_ns, "pods", duplicateFrom={"name": shop},
                            app={"replicas": 1, "workers": 2}))
    wait_ready(cluster, real_ns, "shop-workers")
    other = host_of(cluster, real_ns, "shop-workers")
    page = wait_until(lambda: (r := request(ingress_proxy.port, other, "GET", "/web/login")).status == 200 and r,
                      120, "the prefork app's login page")
    assert page.status == 200
    status, head = websocket_handshake(ingress_proxy.port, other)
    assert status == 101, head


def test_sessions_survive_a_second_replica_and_a_pod_restart(
        cluster: LocalCluster, real_ns: str, shop: str, ingress_proxy: Any) -> None:
    host, db = host_of(cluster, real_ns, shop), database_name(cluster, real_ns, shop)
    password = secret_value(cluster, real_ns, "shop-admin", "password")
    answer, response = authenticate(ingress_proxy.port, host, db, "admin", password)
    assert answer["result"]["uid"] == 2
    cookies = {"session_id": response.cookies["session_id"]}

    def pods() -> list[dict[str, Any]]:
        items = get_json(cluster, "pods", "-n", real_ns, "-l",
                         "app.kubernetes.io/instance=shop,app.kubernetes.io/component=app")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    first = pods()[0]["metadata"]["name"]
    cluster.kubectl("patch", "odb", shop, "-n", real_ns, "--type=merge", "-p", '{"spec":{"app":{"replicas":2}}}')
    wait_until(lambda: len([p for p in pods() if condition(p, "Ready").get("status") == "True"]) == 2, 300,
               "two ready replicas")
    cluster.kubectl("delete", "pod", first, "-n", real_ns, "--wait=true", timeout=120)
    # Only the second replica (and the first one's replacement) serve now: the session is still known.
    for _ in range(4):
        info = json_rpc(ingress_proxy.port, host, "/web/session/get_session_info", {}, cookies).json()
        assert info.get("result", {}).get("uid") == 2, info
    cluster.kubectl("patch", "odb", shop, "-n", real_ns, "--type=merge", "-p", '{"spec":{"app":{"replicas":1}}}')


def test_pg_trgm_in_the_created_database(cluster: LocalCluster, real_ns: str, shop: str, pg_dsn: str) -> None:
    db = database_name(cluster, real_ns, shop)
    dsn = pg_dsn.replace("dbname=postgres", f"dbname={db}")
    assert pg_query(dsn, "SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'") == [("pg_trgm",)]


# ---- backups, restores and renames keep the attachments ----------------------------------------

ATTACHMENTS: dict[int, bytes] = {}


def add_attachments(cluster: LocalCluster, namespace: str, name: str, proxy_port: int,
                    count: int = 3) -> dict[int, bytes]:
    """Public attachments created through the app as its admin would (they land in the pod's filestore)."""
    host, db = host_of(cluster, namespace, name), database_name(cluster, namespace, name)
    password = secret_value(cluster, namespace, f"{name}-admin", "password")
    answer, response = authenticate(proxy_port, host, db, "admin", password)
    assert answer["result"]["uid"] == 2
    cookies = {"session_id": response.cookies["session_id"]}
    made = {}
    for index in range(count):
        content = secrets.token_bytes(2048) + f"attachment {index}".encode()
        values = {"name": f"file-{index}.bin", "datas": base64.b64encode(content).decode(), "public": True,
                  "mimetype": "application/octet-stream"}
        created = json_rpc(proxy_port, host, "/web/dataset/call_kw/ir.attachment/create",
                           {"model": "ir.attachment", "method": "create", "args": [values], "kwargs": {}},
                           cookies).json()
        assert "result" in created, created
        made[int(created["result"])] = content
    return made


def served(proxy_port: int, host: str, attachment_id: int) -> bytes | None:
    """The attachment's bytes, or None while no pod answers for it yet (a pod of the previous rollout
    may still hold the proxy's connection and close it: that is "not yet", not a failure)."""
    try:
        response = request(proxy_port, host, "GET", f"/web/content/{attachment_id}?download=true")
    except (OSError, http.client.HTTPException):
        return None
    return response.body if response.status == 200 else None


def test_a_zip_backup_is_restored_by_odoos_own_restore_db(
        cluster: LocalCluster, real_ns: str, shop: str, ingress_proxy: Any, tmp_path: Path, pg_dsn: str) -> None:
    ATTACHMENTS.update(add_attachments(cluster, real_ns, shop, ingress_proxy.port))
    apply_yaml(cluster, yaml.safe_dump({
        "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DatabaseBackup",
        "metadata": {"name": "shop-now", "namespace": real_ns},
        "spec": {"databaseRef": {"name": shop}, "format": "zip"}}))

    def artifact() -> dict[str, Any] | None:
        status = get_json(cluster, "odbb", "shop-now", "-n", real_ns).get("status") or {}
        if status.get("lastFailure"):
            raise AssertionError(status["lastFailure"])
        return (status.get("artifacts") or [None])[-1]

    made = wait_until(artifact, 600, "the backup's artifact", interval=1)
    found = [p for p in volume_dir(cluster, real_ns, "odoo-backups").rglob(f"*{made['id']}*.zip") if p.is_file()]
    assert len(found) == 1, (made, found)
    zip_path = found[0]

    # Odoo's own restore, as its database manager would run it, reads every attachment back.
    direct, _ = owner_odoo(cluster, real_ns, shop, tmp_path / "restore")
    direct.user = "postgres"  # Odoo's database manager creates the database: a role that may
    assert cluster.postgres is not None
    direct.password = cluster.postgres.password
    restored = f"odoo_restored_{uuid.uuid4().hex[:6]}"
    try:
        direct.python(f"odoo.service.db.restore_db({restored!r}, {str(zip_path)!r}, copy=True)")
        out = direct.shell(restored, f"""
            import hashlib, json
            ids = {sorted(ATTACHMENTS)}
            found = {{a.id: hashlib.sha256(a.raw).hexdigest() for a in env['ir.attachment'].browse(ids)}}
            print('ATTACHMENTS', json.dumps(found))
            """)
        found = json.loads(out.split("ATTACHMENTS ", 1)[1].splitlines()[0])
        assert found == {str(k): hashlib.sha256(v).hexdigest() for k, v in ATTACHMENTS.items()}
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(restored)))


def test_an_odoo_made_zip_is_restored_by_the_operator_and_boots_with_its_attachments(
        cluster: LocalCluster, real_ns: str, shop: str, ingress_proxy: Any, tmp_path: Path) -> None:
    if not ATTACHMENTS:
        ATTACHMENTS.update(add_attachments(cluster, real_ns, shop, ingress_proxy.port))
    direct, db = owner_odoo(cluster, real_ns, shop, tmp_path / "dump")
    # Odoo's dump_db reads the filestore from its data_dir: the app's own filestore volume.
    (direct.data_dir / "filestore").mkdir(parents=True)
    (direct.data_dir / "filestore" / db).symlink_to(volume_dir(cluster, real_ns, "shop-filestore"))
    uploads = volume_dir(cluster, real_ns, "odoo-backups") / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    target = uploads / "made-by-odoo.zip"
    direct.python(f"""
        with open({str(target)!r}, 'wb') as out:
            odoo.service.db.dump_db({db!r}, out, 'zip')
        """)
    assert not (uploads / "made-by-odoo.zip.sha256").exists() and not list(uploads.glob("*.json"))

    apply_yaml(cluster, odb("from-odoo", real_ns, "pods",
                            restoreFrom={"file": "uploads/made-by-odoo.zip", "identity": "keep"}))
    wait_ready(cluster, real_ns, "from-odoo")
    host = host_of(cluster, real_ns, "from-odoo")
    for attachment_id, content in ATTACHMENTS.items():
        got = wait_until(lambda a=attachment_id: served(ingress_proxy.port, host, a), 120, "the attachment served")
        assert got == content


def test_a_renamed_database_keeps_its_attachments(cluster: LocalCluster, real_ns: str, shop: str,
                                                   ingress_proxy: Any) -> None:
    if not ATTACHMENTS:
        ATTACHMENTS.update(add_attachments(cluster, real_ns, shop, ingress_proxy.port))
    apply_yaml(cluster, odb("renamed", real_ns, "pods", duplicateFrom={"name": shop}))
    wait_ready(cluster, real_ns, "renamed")
    new_name = f"renamed_{uuid.uuid4().hex[:6]}"
    cluster.kubectl("patch", "odb", "renamed", "-n", real_ns, "--type=merge", "-p",
                    json.dumps({"spec": {"databaseName": new_name}}))
    wait_until(lambda: database_name(cluster, real_ns, "renamed") == new_name, 300, "the rename")
    wait_ready(cluster, real_ns, "renamed")
    host = host_of(cluster, real_ns, "renamed")
    for attachment_id, content in ATTACHMENTS.items():
        got = wait_until(lambda a=attachment_id: served(ingress_proxy.port, host, a), 180, "the attachment served")
        assert got == content


def test_a_database_moved_to_another_server_is_served_by_odoo_with_its_attachments(
        cluster: LocalCluster, real_ns: str, shop: str, ingress_proxy: Any,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A move (spec.server changed) of a real Odoo database to a second PostgreSQL server that the Pods reach on
    the pod network: Odoo serves it from there, its admin logs in, its attachments are served."""
    from odoo_operator.devtools.dev import apply_default_server
    from odoo_operator.devtools.localcluster import Postgres

    if not ATTACHMENTS:
        ATTACHMENTS.update(add_attachments(cluster, real_ns, shop, ingress_proxy.port))
    second = Postgres(tmp_path_factory.mktemp("moved-to") / "pg", client_cidrs=[cluster.pod_cidr],
                      listen_addresses=f"127.0.0.1,{cluster.pod_gateway_ip}")
    second.init()
    second.start()
    target = f"moved-{uuid.uuid4().hex[:6]}"
    try:
        assert cluster.postgres is not None
        apply_default_server(cluster, name=target, host=cluster.pod_gateway_ip, default=False)
        cluster.kubectl("patch", "pgs", target, "--type=merge", "-p", json.dumps({"spec": {"port": second.port}}))
        apply_yaml(cluster, odb("mover", real_ns, "pods", duplicateFrom={"name": shop}))
        wait_ready(cluster, real_ns, "mover")
        # The second server's admin is postgres with its own password: a Secret of its own.
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{target}-admin",
                                                                     "namespace": "odoo-system"},
                  "data": {"username": base64.b64encode(second.user.encode()).decode(),
                           "password": base64.b64encode(second.password.encode()).decode()}}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
        cluster.kubectl("patch", "pgs", target, "--type=merge", "-p", json.dumps(
            {"spec": {"adminSecretRef": {"namespace": "odoo-system", "name": f"{target}-admin"}}}))
        cluster.kubectl("patch", "odb", "mover", "-n", real_ns, "--type=merge", "-p",
                        json.dumps({"spec": {"server": target}}))

        def moved() -> bool:
            move = (get_json(cluster, "odb", "mover", "-n", real_ns).get("status") or {}).get("move") or {}
            return move.get("phase") == "Done"

        wait_until(moved, 600, "the move", interval=1)
        wait_ready(cluster, real_ns, "mover")
        db = database_name(cluster, real_ns, "mover")
        with psycopg.connect(second.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
        assert not pg_query(cluster.postgres.dsn, "SELECT 1 FROM pg_database WHERE datname = %s", db)
        host = host_of(cluster, real_ns, "mover")
        password = secret_value(cluster, real_ns, f"{shop}-admin", "password")  # a duplicate keeps its source's
        answer = wait_until(lambda: authenticate(ingress_proxy.port, host, db, "admin", password)[0].get("result"),
                            180, "the admin logged in on the moved database")
        assert answer["uid"] == 2
        for attachment_id, content in ATTACHMENTS.items():
            got = wait_until(lambda a=attachment_id: served(ingress_proxy.port, host, a), 180, "the attachment served")
            assert got == content
    finally:
        cluster.kubectl("delete", "odb", "mover", "-n", real_ns, "--timeout=180s", check=False, timeout=240)
        cluster.kubectl("delete", "pgs", target, "--wait=false", check=False)
        second.stop()


# ---- neutralization: the operator's copy for testing against Odoo's own `odoo neutralize` ----------

NEUTRALIZE_MODULES = "mail,calendar,google_calendar,microsoft_calendar,payment_stripe,website,delivery,iap,sms"
# Seeded as a production database would be: live keys, tokens, servers and domains that a copy must not use.
SEED = """
Provider = env['payment.provider']
stripe = Provider.search([('code', '=', 'stripe')], limit=1)
env.cr.execute("UPDATE payment_provider SET state = 'enabled', stripe_secret_key = 'sk_live_x', "
               "stripe_publishable_key = 'pk_live_x', stripe_webhook_secret = 'whsec_x' WHERE id = %s", [stripe.id])
cred = env['google.calendar.credentials'].create({'calendar_rtoken': 'g-refresh', 'calendar_token': 'g-token'})
env.ref('base.user_admin').write({'google_calendar_account_id': cred.id})
env.cr.execute("UPDATE res_users SET microsoft_calendar_token = 'ms-token', microsoft_calendar_rtoken = 'ms-refresh', "
               "microsoft_synchronization_stopped = false")
env['delivery.carrier'].search([]).write({'prod_environment': True})
env['iap.account'].create({'service_name': 'sms', 'account_token': 'live-token'})
server = env['ir.mail_server'].create({'name': 'live smtp', 'smtp_host': 'smtp.example.com', 'smtp_port': 587})
env['mail.template'].search([], limit=3).write({'mail_server_id': server.id})
env['fetchmail.server'].create({'name': 'live imap', 'server': 'imap.example.com', 'server_type': 'imap',
                                'port': 993, 'user': 'u', 'password': 'p', 'active': True})
env['website'].search([]).write({'domain': 'https://shop.example.com', 'cdn_activated': True,
                                 'robots_txt': 'User-agent: *\\nAllow: /'})
env.cr.execute("UPDATE ir_cron SET active = true")
"""
# Columns that move by themselves (write dates, cron schedules) or are the copy's fresh identity.
VOLATILE_COLUMNS = {"write_date", "create_date", "write_uid", "nextcall", "lastcall"}
IDENTITY_PARAMETERS = ("database.uuid", "database.secret", "database.create_date", "web.base.url")


def owner_odoo(cluster: LocalCluster, namespace: str, name: str, workdir: Path) -> tuple[DirectOdoo, str]:
    """Odoo's own code connected as the database's own role, with the credentials the operator gave it."""
    def value(key: str) -> str:
        return secret_value(cluster, namespace, f"{name}-db", key)

    return DirectOdoo(host=value("host"), port=int(value("port")), user=value("user"), password=value("password"),
                      data_dir=workdir), value("database")


def table_rows(dsn: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        columns = [c for (c,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
            "ORDER BY ordinal_position", [table]).fetchall() if c not in VOLATILE_COLUMNS]
        query = sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns), sql.Identifier(table))
        rows = conn.execute(query).fetchall()
        if table == "ir_config_parameter":
            key = columns.index("key")
            rows = [r for r in rows if r[key] not in IDENTITY_PARAMETERS]
        return [tuple(r) for r in rows]


@pytest.mark.timeout(1800)
def test_a_copy_for_testing_is_neutralized_as_odoo_neutralize_does(
        cluster: LocalCluster, real_ns: str, shop: str, pg_dsn: str, tmp_path: Path) -> None:
    # The source, with the apps of the issue installed and seeded by Odoo's own code, its app stopped.
    cluster.kubectl("patch", "odb", shop, "-n", real_ns, "--type=merge", "-p", '{"spec":{"app":{"suspended":true}}}')
    wait_until(lambda: not get_json(cluster, "pods", "-n", real_ns, "-l",
                                    "app.kubernetes.io/instance=shop,app.kubernetes.io/component=app")["items"],
               180, "the app stopped")
    direct, db = owner_odoo(cluster, real_ns, shop, tmp_path / "source")
    direct.odoo_bin("-d", db, "-i", NEUTRALIZE_MODULES, "--without-demo=all", "--stop-after-init", "--no-http")
    direct.shell(db, SEED)

    # The reference: a plain copy neutralized by `odoo neutralize` itself.
    reference = f"ref_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
            sql.Identifier(reference), sql.Identifier(db), sql.Identifier(direct.user)))
    try:
        direct.odoo_bin("neutralize", "-d", reference)
        queries = direct.odoo_bin("neutralize", "-d", reference, "--stdout").stdout
        tables = sorted(set(_statement_targets(queries)))
        assert {"payment_provider", "google_calendar_credentials", "res_users", "website", "delivery_carrier",
                "iap_account", "ir_mail_server", "ir_cron", "ir_config_parameter", "mail_template",
                "fetchmail_server", "ir_ui_view"} <= set(tables), tables

        # The operator's copy for testing.
        apply_yaml(cluster, odb("shop-test", real_ns, "pods", duplicateFrom={"name": shop, "forTesting": True}))
        obj = wait_ready(cluster, real_ns, "shop-test")
        assert obj["status"]["neutralized"] is True
        copy = obj["status"]["databaseName"]

        source_dsn = pg_dsn.replace("dbname=postgres", f"dbname={db}")
        ref_dsn = pg_dsn.replace("dbname=postgres", f"dbname={reference}")
        copy_dsn = pg_dsn.replace("dbname=postgres", f"dbname={copy}")
        differing = []
        for table in tables:
            expected = table_rows(ref_dsn, table)
            assert table_rows(copy_dsn, table) == expected, f"{table} differs from `odoo neutralize`"
            if table_rows(source_dsn, table) != expected:
                differing.append(table)
        # The comparison has teeth: the seeded source differs from the neutralized state in these tables.
        assert {"payment_provider", "google_calendar_credentials", "res_users", "website", "delivery_carrier",
                "iap_account", "ir_mail_server", "ir_cron", "ir_config_parameter", "mail_template",
                "fetchmail_server", "ir_ui_view"} <= set(differing), differing
        events = cluster.kubectl("get", "events", "-n", real_ns, "--field-selector",
                                 "involvedObject.name=shop-test", "-o", "json").stdout
        assert "odoo neutralize" in events
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(reference)))
        cluster.kubectl("patch", "odb", shop, "-n", real_ns, "--type=merge", "-p",
                        '{"spec":{"app":{"suspended":false}}}')


def _statement_targets(queries: str) -> list[str]:
    import re

    # The table of each UPDATE / INSERT INTO statement (not the `DO UPDATE SET` of an upsert).
    return re.findall(r"^\s*(?:UPDATE|INSERT\s+INTO)\s+(?!SET\b)\"?(\w+)\"?", queries,
                      flags=re.IGNORECASE | re.MULTILINE)

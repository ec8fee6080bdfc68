"""Pure builders (specs/app.py, the routes of specs/routes.py): what an OdooDatabase owns, without a cluster."""

import base64
import json

import pytest

from odoo_operator import specs
from odoo_operator.api.conditions import Condition, merge_conditions
from odoo_operator.api.labels import ODOO_CONF_ANNOTATION
from odoo_operator.api.model import parse_odoo_database
from odoo_operator.config import Settings
from odoo_operator.specs import template as template_spec

SETTINGS = Settings(base_domain="apps.example.com", images={"17.0": "odoo:17.0"})
ENDPOINT = specs.app.DatabaseEndpoint("pg.example", 5433, "require")


def make_db(**spec):
    return parse_odoo_database({"metadata": {"name": "shop", "namespace": "ns", "uid": "uid-1", "generation": 1},
                                "spec": {"version": "17.0", **spec}}, SETTINGS)


def test_every_child_is_owned_and_labelled():
    db = make_db()
    children = [
        specs.app.build_db_secret(db, "pg", 5432, "disable", "pw"),
        specs.app.build_admin_secret(db, "pw"),
        specs.app.build_filestore_pvc(db, SETTINGS),
        specs.app.build_sessions_pvc(db, SETTINGS),
        specs.app.build_init_job(db, ENDPOINT),
        specs.app.build_neutralize_job(db, ENDPOINT),
        specs.app.build_deployment(db, 1, "h", ENDPOINT),
        specs.app.build_service(db),
        specs.routes.build_database_ingress(db, SETTINGS),
    ]
    names = [c["metadata"]["name"] for c in children]
    assert names == ["shop-db", "shop-admin", "shop-filestore", "shop-sessions", "shop-init",
                     "shop-neutralize", "shop", "shop", "shop"]
    for child in children:
        ref = child["metadata"]["ownerReferences"][0]
        assert ref["uid"] == "uid-1" and ref["controller"] is True and ref["kind"] == "OdooDatabase"
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "odoo-db-operator"
        assert child["metadata"]["labels"]["odoo.dbmanager.io/database"] == "shop"


def test_db_secret_holds_connection_keys():
    secret = specs.app.build_db_secret(make_db(), "pg.example", 5433, "require", "s3cret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["host"] == "pg.example" and data["port"] == "5433" and data["database"] == "shop"
    assert data["password"] == "s3cret" and data["user"].startswith("odoo_")


def conf_options(conf: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in conf.splitlines() if " = " in line)


def odoo_containers(db):
    """Every container that runs the database's Odoo image, by the object it belongs to."""
    objects = [specs.app.build_init_job(db, ENDPOINT), specs.app.build_neutralize_job(db, ENDPOINT),
               specs.app.build_deployment(db, 1, "h", ENDPOINT)]
    return {obj["metadata"]["name"]: obj["spec"]["template"]["spec"]["containers"][0] for obj in objects}


def test_deployment_runs_one_database_with_filter_and_proxy_mode():
    deployment = specs.app.build_deployment(make_db(), 2, "abc", ENDPOINT)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["odoo", "-c", "/etc/odoo/odoo.conf"]
    assert container["args"] == ["--database", "shop", "--db-filter", "^shop$", "--proxy-mode", "--no-database-list"]
    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == "odoo:17.0"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["filestore"] == "/var/lib/odoo/filestore/shop"
    # Credentials come from the Secret, never inline.
    assert "s3cret" not in json.dumps(deployment)
    assert all("valueFrom" in env for env in container["env"])


def test_every_odoo_container_skips_the_image_entrypoint_and_gets_the_password_only_from_the_secret():
    """The official image's entrypoint runs only when a container sets no `command`; it would add
    `--db_password odoo`-style defaults to the command line. So every Odoo container sets `command`,
    its connection is in odoo.conf, and the password reaches libpq as PGPASSWORD from <name>-db."""
    db = make_db()
    containers = odoo_containers(db)
    assert set(containers) == {"shop-init", "shop-neutralize", "shop"}
    for name, container in containers.items():
        assert container["command"][0] in ("odoo", "/bin/bash"), name
        argv = container["command"] + container.get("args", [])
        if name == "shop-init":
            argv = argv[:-1]  # the script, checked below
        assert not any("password" in arg.lower() or arg.startswith("--db_") or arg in ("-w", "-r")
                       for arg in argv), name
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
        assert env["PGPASSWORD"] == {"name": "shop-db", "key": "password"}, name
        # The entrypoint's variables are gone: nothing reads them any more.
        assert not {"HOST", "PORT", "USER", "PASSWORD", "PGSSLMODE", "PGHOST"} & set(env), name
        assert {"name": "config", "mountPath": "/etc/odoo", "readOnly": True} in container["volumeMounts"], name
    script = containers["shop-init"]["command"][-1]
    assert script.count("-c /etc/odoo/odoo.conf") == 2
    assert "--db_" not in script and "PASSWORD" not in script.replace("ODOO_ADMIN_PASSWORD", "")


def test_odoo_conf_holds_the_connection_but_never_the_password():
    db = make_db()
    conf = specs.app.render_odoo_conf(db, ENDPOINT)
    options = conf_options(conf)
    assert options["db_host"] == "pg.example" and options["db_port"] == "5433"
    assert options["db_user"] == db.role_name and options["db_sslmode"] == "require"
    assert "db_password" not in options and "password" not in conf.lower()



def test_every_odoo_pod_reads_the_odoo_conf_of_its_own_template():
    """No ConfigMap: odoo.conf is an annotation of each pod template, projected at /etc/odoo by the downward
    API — the app, its Jobs and a template's Job; a Pod never reads a configuration written for another."""
    db = make_db()
    conf = specs.app.render_odoo_conf(db, ENDPOINT)
    pods = [specs.app.build_deployment(db, 1, "h", ENDPOINT), specs.app.build_init_job(db, ENDPOINT),
            specs.app.build_neutralize_job(db, ENDPOINT)]
    pods.append(template_spec.build_objects("k", "ops", "pg", "u", "odoo:16.0", ENDPOINT, "pw")[1])
    for obj in pods:
        template = obj["spec"]["template"]
        volume = {v["name"]: v for v in template["spec"]["volumes"]}["config"]
        assert "configMap" not in volume
        (item,) = volume["downwardAPI"]["items"]
        assert item == {"path": "odoo.conf", "fieldRef": {
            "fieldPath": f"metadata.annotations['{ODOO_CONF_ANNOTATION}']"}}
        assert {"name": "config", "mountPath": "/etc/odoo", "readOnly": True} in \
            template["spec"]["containers"][0]["volumeMounts"]
        written = template["metadata"]["annotations"][ODOO_CONF_ANNOTATION]
        assert written == (conf if obj["metadata"]["name"] != "odoo-template-k" else
                           template_spec.render_odoo_conf("k", ENDPOINT))
        assert "password" not in written.lower()


def test_odoo_conf_keeps_the_images_extra_addons():
    """This odoo.conf replaces the official image's, whose addons_path is /mnt/extra-addons:
    without it, modules of images built FROM odoo (and their neutralize.sql) would be invisible."""
    assert conf_options(specs.app.render_odoo_conf(make_db(), ENDPOINT))["addons_path"] == "/mnt/extra-addons"


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_odoo_conf_applies_the_servers_ssl_mode(mode):
    # Odoo's own db_sslmode (default prefer) wins over PGSSLMODE: the mode must be in odoo.conf.
    conf = specs.app.render_odoo_conf(make_db(), specs.app.DatabaseEndpoint("pg", 5432, mode))
    assert conf_options(conf)["db_sslmode"] == mode


def test_a_change_of_server_address_or_ssl_mode_rolls_the_pods():
    db = make_db()

    def config_annotation(endpoint):
        deployment = specs.app.build_deployment(db, 1, "h", endpoint)
        return deployment["spec"]["template"]["metadata"]["annotations"][ODOO_CONF_ANNOTATION]

    base = config_annotation(ENDPOINT)
    for other in (specs.app.DatabaseEndpoint("pg2.example", 5433, "require"),
                  specs.app.DatabaseEndpoint("pg.example", 5434, "require"),
                  specs.app.DatabaseEndpoint("pg.example", 5433, "verify-full")):
        assert config_annotation(other) != base
    assert config_annotation(specs.app.DatabaseEndpoint("pg.example", 5433, "require")) == base


def test_password_change_rolls_the_pods():
    db = make_db()
    a = specs.app.credentials_fingerprint(db, "one")
    assert a != specs.app.credentials_fingerprint(db, "two")
    assert "one" not in a
    annotations = [specs.app.build_deployment(db, 1, specs.app.credentials_fingerprint(db, pw), ENDPOINT)
                   ["spec"]["template"]["metadata"]["annotations"]["odoo.dbmanager.io/credentials"]
                   for pw in ("one", "two")]
    assert annotations[0] != annotations[1]


def test_odoo_conf_disables_the_database_manager_and_keeps_user_keys():
    conf = specs.app.render_odoo_conf(make_db(app={"config": {"limit_time_cpu": "120"}, "workers": 4}), ENDPOINT)
    assert "list_db = False" in conf and "dbfilter = ^shop$" in conf and "proxy_mode = True" in conf
    assert "limit_time_cpu = 120" in conf and "workers = 4" in conf


def test_init_job_installs_base_without_demo_and_sets_admin_password_from_secret():
    job = specs.app.build_init_job(make_db(), ENDPOINT)
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = container["command"][-1]
    assert "-i base" in script and "--without-demo=all" in script and "--stop-after-init" in script
    admin = [e for e in container["env"] if e["name"] == "ODOO_ADMIN_PASSWORD"][0]
    assert admin["valueFrom"]["secretKeyRef"] == {"name": "shop-admin", "key": "password"}
    assert "os.environ['ODOO_ADMIN_PASSWORD']" in script  # read from env in `odoo shell`, never argv
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_neutralize_job_runs_odoos_own_neutralize_on_the_database_with_the_init_jobs_volumes():
    db = make_db(databaseName="shop_test")
    job = specs.app.build_neutralize_job(db, ENDPOINT)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "odoo:17.0"
    assert container["command"] == ["odoo", "neutralize", "-c", "/etc/odoo/odoo.conf", "-d", "shop_test"]
    assert "args" not in container
    init = specs.app.build_init_job(db, ENDPOINT)["spec"]["template"]["spec"]
    assert job["spec"]["template"]["spec"]["volumes"] == init["volumes"]
    assert container["volumeMounts"] == init["containers"][0]["volumeMounts"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "neutralize"


def test_sessions_live_on_a_shared_volume_of_the_app_only():
    db = make_db(app={"replicas": 3})
    pvc = specs.app.build_sessions_pvc(db, Settings(storage_class="fast", filestore_access_mode="ReadWriteMany"))
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["storageClassName"] == "fast"
    assert pvc["metadata"]["labels"]["app.kubernetes.io/component"] == "sessions"
    # A copy starts with nobody logged in: never a clone of the source's sessions.
    copy = make_db(duplicateFrom={"name": "prod"})
    assert "dataSource" not in specs.app.build_sessions_pvc(copy, SETTINGS)["spec"]
    assert "dataSource" in specs.app.build_filestore_pvc(copy, SETTINGS)["spec"]
    pod = specs.app.build_deployment(db, 3, "h", ENDPOINT)["spec"]["template"]["spec"]
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    assert claims["sessions"] == "shop-sessions"
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["sessions"] == "/var/lib/odoo/sessions"  # odoo.tools.config.session_dir
    assert conf_options(specs.app.render_odoo_conf(db, ENDPOINT))["data_dir"] == "/var/lib/odoo"
    for job in (specs.app.build_init_job(db, ENDPOINT), specs.app.build_neutralize_job(db, ENDPOINT)):
        assert "sessions" not in {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}


def test_conditions_keep_transition_time_while_status_is_unchanged():
    first = merge_conditions([], [Condition.false("Ready", "Provisioning")], 1)
    first[0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    same = merge_conditions(first, [Condition.false("Ready", "Initializing", "other reason")], 2)
    assert same[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z" and same[0]["observedGeneration"] == 2
    flipped = merge_conditions(first, [Condition.true("Ready", "Ready")], 2)
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


@pytest.mark.parametrize("gateway", ["public", "a/b/c/d", "/public", "infra/"])
def test_a_malformed_gateway_setting_stops_the_operator_at_start(gateway):
    with pytest.raises(ValueError, match="namespace/name"):
        Settings.from_env({"ODOO_OPERATOR_GATEWAY": gateway})


def test_child_names_fit_their_kind_and_stay_stable():
    from odoo_operator.specs.app import child_name
    assert child_name("shop", "init") == "shop-init"  # short names are unchanged: existing objects are found again
    long = "a" * 63
    name = child_name(long, "filestore-copy")
    assert len(name) <= 63 and name.endswith("-filestore-copy") and name == child_name(long, "filestore-copy")
    # Two names that share their first 50 characters still get different children.
    assert child_name("b" * 50 + "x" * 13, "neutralize") != child_name("b" * 50 + "y" * 13, "neutralize")
    # A cut that ends on '-' or '.' leaves no '--' before the hash, and the result is a DNS-1123 label.
    cut = child_name("c" * 40 + "-" * 10 + "d" * 13, "restore")
    assert "--" not in cut and cut[0].isalnum() and cut[-1].isalnum()
    assert len(child_name("e" * 63, limit=52)) == 52


def test_the_longest_name_gives_valid_job_cronjob_and_label_names():
    from odoo_operator import specs
    from odoo_operator.api.model import parse_database_backup
    db = parse_odoo_database({"metadata": {"name": "n" * 63, "namespace": "ns", "uid": "u"},
                              "spec": {"version": "17.0", "databaseName": "shop",
                                       "duplicateFrom": {"name": "src"}}}, SETTINGS)
    jobs = [specs.app.build_init_job(db, ENDPOINT), specs.app.build_neutralize_job(db, ENDPOINT),
            specs.app.build_filestore_copy_job(db, "i"),
            specs.backup.build_restore_job(db, db.backup.storage, SETTINGS, source_database="s", artifact="a"),
            specs.backup.build_final_backup_job(db, "shop", db.backup.storage, db.backup.retention, SETTINGS)]
    assert all(len(job["metadata"]["name"]) <= 63 for job in jobs)
    assert len({job["metadata"]["name"] for job in jobs}) == len(jobs)
    daily = specs.backup.build_daily_backup(db)
    assert len(daily["metadata"]["name"]) <= 63
    backup = parse_database_backup({**daily, "metadata": {**daily["metadata"], "uid": "u2"}}, SETTINGS)
    cron = specs.backup.build_backup_cronjob(backup, db, "shop", SETTINGS)
    assert len(cron["metadata"]["name"]) <= 52
    for obj in [*jobs, daily, cron]:
        assert all(len(value) <= 63 for value in obj["metadata"]["labels"].values())

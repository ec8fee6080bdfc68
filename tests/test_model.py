"""Spec parsing: the operator re-checks what the schema already refuses, and fills defaults."""

import pytest

from odoo_operator.api.model import SpecError, parse_odoo_database, parse_postgres_server, role_name
from odoo_operator.config import Settings, _parse_images

SETTINGS = Settings(base_domain="apps.example.com", images={"17.0": "odoo:17.0"})


def body(name="shop", namespace="team-a", **spec):
    return {"metadata": {"name": name, "namespace": namespace, "uid": "u-1", "generation": 3},
            "spec": {"version": "17.0", **spec}}


def test_defaults_follow_the_design():
    db = parse_odoo_database(body(), SETTINGS)
    assert db.database_name == "shop"
    assert db.hostname == "shop.apps.example.com"
    assert db.image == "odoo:17.0"
    assert db.deletion_policy == "Delete"
    assert db.app.replicas == 1 and not db.app.suspended
    assert db.generation == 3


def test_underscores_odoo_allows_become_hyphens_in_the_default_host():
    assert parse_odoo_database(body(databaseName="Shop_2024"), SETTINGS).hostname == "shop-2024.apps.example.com"


@pytest.mark.parametrize("name", ["-bad", "a", "has space", "x" * 64, "é-accent", "semi;colon"])
def test_invalid_database_names_are_refused(name):
    with pytest.raises(SpecError, match="not a valid Odoo database name"):
        parse_odoo_database(body(databaseName=name), SETTINGS)


@pytest.mark.parametrize("name", ["postgres", "template0", "Template1"])
def test_reserved_names_are_refused(name):
    with pytest.raises(SpecError, match="reserved"):
        parse_odoo_database(body(databaseName=name), SETTINGS)


def test_metadata_name_is_checked_when_database_name_is_absent():
    with pytest.raises(SpecError, match="metadata.name"):
        parse_odoo_database(body(name="postgres"), SETTINGS)


def test_unknown_version_without_image_says_what_is_known():
    with pytest.raises(SpecError, match=r"no image is configured for Odoo 18.0 \(known versions: 17.0\)"):
        parse_odoo_database(body(version="18.0"), SETTINGS)
    assert parse_odoo_database(body(version="18.0", image="registry/odoo:18"), SETTINGS).image == "registry/odoo:18"


def test_tags_become_sorted_label_keys():
    db = parse_odoo_database(body(tags=["prod", "eu", "prod"]), SETTINGS)
    assert db.tags == ("eu", "prod")
    assert db.tag_labels == {"tag.odoo.dbmanager.io/eu": "true", "tag.odoo.dbmanager.io/prod": "true"}
    with pytest.raises(SpecError, match="tag 'Prod'"):
        parse_odoo_database(body(tags=["Prod"]), SETTINGS)


@pytest.mark.parametrize("config, message", [
    ({"db_password": "x"}, "managed by the operator"),
    ({"list_db": "True"}, "managed by the operator"),
    ({"limit_time_cpu": "60\nadmin_passwd = x"}, "single-line"),
    ({"Bad-Key": "1"}, "not a valid odoo.conf key"),
])
def test_app_config_cannot_override_operator_keys_or_inject_lines(config, message):
    with pytest.raises(SpecError, match=message):
        parse_odoo_database(body(app={"config": config}), SETTINGS)


def test_backup_defaults_follow_odoo_sla_and_can_be_turned_off():
    db = parse_odoo_database(body(), SETTINGS)
    assert db.backup is not None and db.backup.schedule == "@daily"
    assert (db.backup.retention.keep_daily, db.backup.retention.keep_weekly, db.backup.retention.keep_monthly) == (
        7, 4, 3)
    assert db.backup.storage.url("ns", "shop") == "file:///backups/ns/shop"
    assert parse_odoo_database(body(backup={"enabled": False}), SETTINGS).backup is None
    s3 = parse_odoo_database(body(backup={"storage": {"s3": {"bucket": "b", "prefix": "odoo"}}}), SETTINGS)
    assert s3.backup.storage.url("ns", "shop") == "s3://b/odoo/ns/shop"
    with pytest.raises(SpecError, match="cron"):
        parse_odoo_database(body(backup={"schedule": "every day"}), SETTINGS)


def test_replicas_bounds():
    with pytest.raises(SpecError, match="replicas"):
        parse_odoo_database(body(app={"replicas": 99}), SETTINGS)


def test_role_name_is_stable_short_and_namespace_specific():
    assert role_name("a", "shop") == role_name("a", "shop")
    assert role_name("a", "shop") != role_name("b", "shop")
    assert len(role_name("a", "x" * 253)) <= 63


def test_postgres_server_defaults():
    server = parse_postgres_server({"metadata": {"name": "pg"}, "spec": {
        "host": "db", "adminSecretRef": {"namespace": "ns", "name": "s"}}})
    assert (server.port, server.ssl_mode, server.default) == (5432, "prefer", False)
    with pytest.raises(SpecError):
        parse_postgres_server({"metadata": {"name": "pg"}, "spec": {"host": "db"}})


def test_settings_image_table_from_env():
    assert _parse_images("17.0=odoo:17.0, 18.0=odoo:18.0") == ({"17.0": "odoo:17.0", "18.0": "odoo:18.0"}, {})
    assert _parse_images('{"17.0": "r/odoo:17"}') == ({"17.0": "r/odoo:17"}, {})
    settings = Settings.from_env({"ODOO_OPERATOR_BASE_DOMAIN": "x.io", "ODOO_OPERATOR_CLUSTER_ISSUER": "le"})
    assert settings.base_domain == "x.io" and settings.url_scheme == "https"


TRAVERSALS = ["../other/odoodatabases/shop", "..", "a/b", "shop%2F..", "Shop", "shop\n", "", "x" * 254]


@pytest.mark.parametrize("value", TRAVERSALS)
@pytest.mark.parametrize("spec, field", [
    (lambda v: {"duplicateFrom": {"name": v or 5}}, "spec.duplicateFrom.name"),
    (lambda v: {"restoreFrom": {"backup": v or 5}}, "spec.restoreFrom.backup"),
    (lambda v: {"restoreFrom": {"file": "a.zip", "storage": {"pvc": {"claimName": v}}}},
     "spec.restoreFrom.storage.pvc.claimName"),
    (lambda v: {"backup": {"storage": {"pvc": {"claimName": v}}}}, "spec.backup.storage.pvc.claimName"),
    (lambda v: {"backup": {"storage": {"s3": {"bucket": "b", "credentialsSecret": {"name": v}}}}},
     "spec.backup.storage.s3.credentialsSecret.name"),
    (lambda v: {"server": v}, "spec.server"),
])
def test_every_reference_is_a_kubernetes_name_and_the_error_names_the_field(spec, field, value):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_odoo_database(body(**spec(value)), SETTINGS)


@pytest.mark.parametrize("name", ["1shop", "shop.prod", "-shop", "shop-", "x" * 64, "Shop", "shop\n"])
def test_an_odoo_database_name_is_a_dns_1035_label(name):
    with pytest.raises(SpecError, match="metadata.name"):
        parse_odoo_database(body(name=name, databaseName="shop"), SETTINGS)
    assert parse_odoo_database(body(name="x" * 63, databaseName="shop"), SETTINGS).name == "x" * 63


def test_database_backup_references_and_names_are_checked():
    from odoo_operator.api.model import parse_database_backup

    def backup(name="b", **spec):
        return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"databaseRef": {"name": "shop"}, **spec}}

    assert parse_database_backup(backup("a.b-" + "c" * 59), SETTINGS).database == "shop"
    for raw, field in [(backup("b" * 64), "metadata.name"),
                       (backup(databaseRef={"name": "../x"}), "spec.databaseRef.name"),
                       (backup(storage={"pvc": {"claimName": "a/b"}}), "spec.storage.pvc.claimName"),
                       (backup(storage={"s3": {"bucket": "x/../y"}}), "spec.storage.s3.bucket"),
                       (backup(schedule="@daily\n"), "spec.schedule")]:
        with pytest.raises(SpecError, match=field.replace(".", r"\.")):
            parse_database_backup(raw, SETTINGS)


@pytest.mark.parametrize("ref, field", [({"namespace": "../x", "name": "s"}, "adminSecretRef.namespace"),
                                        ({"namespace": "db", "name": "a/b"}, "adminSecretRef.name")])
def test_postgres_server_admin_secret_ref_is_a_name(ref, field):
    with pytest.raises(SpecError, match=field):
        parse_postgres_server({"metadata": {"name": "pg"}, "spec": {"host": "db", "adminSecretRef": ref}})


@pytest.mark.parametrize("text", ["9999999999d", "1234567h", "1d\n", "٣d", "-1d"])
def test_expires_after_is_bounded_and_the_error_names_the_field(text):
    with pytest.raises(SpecError, match=r"spec\.expiresAfter"):
        parse_odoo_database(body(expiresAfter=text), SETTINGS)
    longest = parse_odoo_database(body(expiresAfter="999999d999999h999999m999999s"), SETTINGS).expires_after
    assert longest is not None and longest.days > 999999


@pytest.mark.parametrize("spec", [{"databaseName": "shop\n"}, {"hostname": "shop.example.com\n"},
                                  {"tags": ["prod\n"]}, {"version": "17.0\n"}])
def test_a_trailing_newline_never_slips_through_a_pattern(spec):
    with pytest.raises(SpecError):
        parse_odoo_database(body(**spec), SETTINGS)

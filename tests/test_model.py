"""Spec parsing: the operator re-checks what the schema already refuses, and fills defaults."""

import pytest

from odoo_operator.config import Settings, _parse_images
from odoo_operator.model import SpecError, parse_odoo_database, parse_postgres_server, role_name

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
    assert _parse_images("17.0=odoo:17.0, 18.0=odoo:18.0") == {"17.0": "odoo:17.0", "18.0": "odoo:18.0"}
    assert _parse_images('{"17.0": "r/odoo:17"}') == {"17.0": "r/odoo:17"}
    settings = Settings.from_env({"ODOO_OPERATOR_BASE_DOMAIN": "x.io", "ODOO_OPERATOR_CLUSTER_ISSUER": "le"})
    assert settings.base_domain == "x.io" and settings.url_scheme == "https"

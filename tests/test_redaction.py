"""What the support bundle (kubectl odoo support) redacts: kubectl/support.py scrub_text / scrub, pure functions.

Each case plants secret parts and asserts that none of them survives, and that the text around them does
(a redaction that swallows everything would pass the first half only)."""

from __future__ import annotations

import pytest

from odoo_operator.kubectl.support import REDACTED, scrub, scrub_text

PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0planted1\nq8Zplanted2+/==\n"
       "-----END RSA PRIVATE KEY-----")

# (text, the parts that must disappear, the parts that must stay)
CASES = [
    ("[options]\nsmtp_password = my secret value\nlimit_time_real = 1200\n",
     ["my", "secret value"], ["smtp_password = ", "limit_time_real = 1200"]),
    ("admin_passwd: hunter two three", ["hunter", "two three"], ["admin_passwd: "]),
    ("--db_password=abc\\ def --admin_passwd='x y z' -i base", ["abc", "def", "x y z"],
     ["--db_password=", "--admin_passwd=", "-i base"]),
    ('{"password": "a \\"quoted\\" pass", "user": "odoo"}', ["a \\\"quoted", "pass\""], ['"user": "odoo"']),
    ("host=db password='my pass phrase' user=odoo", ["my pass", "phrase"], ["host=db", "user=odoo"]),
    ('api_key: "k e y" then text', ["k e y"], ["then text"]),
    (f"tls.key contents:\n{PEM}\nafter the key", ["planted1", "planted2", "MIIE"],
     ["BEGIN RSA PRIVATE KEY", "after the key"]),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktplanted\nno end line", ["planted", "no end line"], []),
    ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqplanted\n-----END ENCRYPTED PRIVATE KEY-----\nok",
     ["planted"], ["ok"]),
    ("cannot connect to postgresql://odoo:s3cr3t@db.example:5432/shop", ["s3cr3t"],
     ["postgresql://odoo:", "@db.example:5432/shop"]),
    ("dsn postgresql://odoo:pa/ss:w?o#rd@db.example/shop", ["pa/ss", "w?o#rd"], ["@db.example/shop"]),
    ("dsn postgresql://odoo:with space@and-at@db.example/shop", ["with space", "and-at"], ["@db.example/shop"]),
    ("https://hooks.example/cb?user=u&token=abc def&next=1", ["abc", "def"], ["user=u", "&next=1"]),
    ("Authorization: Bearer eyJplanted.x and Basic dXNlcjpwYXNz", ["eyJplanted", "dXNlcjpwYXNz"], ["and"]),
]


@pytest.mark.parametrize(("text", "gone", "kept"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_scrub_text_redacts_the_whole_value(text: str, gone: list[str], kept: list[str]) -> None:
    out = scrub_text(text)
    assert REDACTED in out, out
    for part in gone:
        assert part not in out, f"{part!r} leaked: {out!r}"
    for part in kept:
        assert part in out, f"{part!r} was lost: {out!r}"


@pytest.mark.parametrize("text", [
    "password authentication failed for user \"odoo\"",
    "-----BEGIN CERTIFICATE-----\nMIIcert\n-----END CERTIFICATE-----",
    "Secrets are never read; values that look secret are redacted.",
    "http://shop.odoo.localhost/web",
    "password=",
])
def test_scrub_text_leaves_harmless_text_alone(text: str) -> None:
    assert scrub_text(text) == text


def test_scrub_objects() -> None:
    configmap = {"kind": "ConfigMap", "metadata": {"name": "shop-conf"},
                 "data": {"odoo.conf": "[options]\nadmin_passwd = two words\nworkers = 2\n", "client.pem": PEM,
                          "tls.key": "anything"}}
    out = scrub(configmap)
    assert out["data"]["odoo.conf"] == f"[options]\nadmin_passwd = {REDACTED}\nworkers = 2\n"
    assert "planted" not in out["data"]["client.pem"] and out["data"]["tls.key"] == REDACTED
    env = [{"name": "SMTP_PASSWORD", "value": "a b c"}, {"name": "ODOO_ARGS", "value": "--db_password='p q' -i base"},
           {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}}}]
    out_env = scrub({"env": env})["env"]
    assert out_env[0]["value"] == REDACTED
    assert out_env[1]["value"] == f"--db_password='{REDACTED}' -i base"
    assert out_env[2] == env[2]  # a reference to a Secret, not a secret

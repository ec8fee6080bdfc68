"""Pure builders of a template database's Kubernetes objects: the names, the Secret with its role's password, the
odoo.conf and the Job in which Odoo itself initialises the template (controller/templates.py decides when).

One template per PostgresServer, Odoo version and image: `-i base,auth_signup --without-demo=all`, the same
install as a database's own init Job (specs.app.INIT_SCRIPT), then its attachments moved into the database
(Odoo's own `ir.attachment.force_storage()` with `ir_attachment.location = db`, the parameter removed after):
the Job's data dir is thrown away, and a copy has its own, empty filestore, so the ~20 files base writes
(flags, the company's logo and favicon, the admin's avatar, menu icons) travel inside the database and are
read from there, as Odoo reads any attachment stored in the database; what a copy writes later goes to
its filestore as usual. Before that, Odoo's own `ir.qweb._pregenerate_assets_bundles()` (what Odoo runs
before its tests) builds the web asset bundles, stored the same way, so a copy's first login page and
first backend load do not compile them (SCSS included): the bundles depend only on the code, which is the
template's image.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.labels import MANAGED_BY, ODOO_CONF_ANNOTATION, TEMPLATE_LABEL
from odoo_operator.pg import TEMPLATE_PREFIX
from odoo_operator.specs.app import (
    CONTAINER_SECURITY_CONTEXT,
    ODOO_CONF,
    ODOO_DATA_DIR,
    ODOO_EXTRA_ADDONS,
    POD_SECURITY_CONTEXT,
    DatabaseEndpoint,
)

COMPONENT = "template"
JOB_DEADLINE_SECONDS = 1800

TEMPLATE_SCRIPT = """set -eu
odoo -c /etc/odoo/odoo.conf -d "$PGDATABASE" -i base,auth_signup --without-demo=all --stop-after-init --no-http
odoo shell -c /etc/odoo/odoo.conf -d "$PGDATABASE" --no-http <<'PY'
params = env['ir.config_parameter'].sudo()
params.set_param('ir_attachment.location', 'db')
env['ir.qweb']._pregenerate_assets_bundles()
env['ir.attachment'].sudo().force_storage()
params.set_param('ir_attachment.location', False)
env.cr.commit()
PY
"""


def template_key(server: str, version: str, image: str) -> str:
    return hashlib.sha256(f"{server}\n{version}\n{image}".encode()).hexdigest()[:16]


def database_name(key: str) -> str:
    """The template database, and the role it belongs to while it is built (both only the operator's)."""
    return f"{TEMPLATE_PREFIX}{key}"


def object_name(key: str) -> str:
    """The Job and Secret of a template, in the template namespace."""
    return f"odoo-template-{key}"


def labels(key: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "odoo",
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        TEMPLATE_LABEL: key,
    }


def _metadata(key: str, namespace: str, server: str, server_uid: str) -> dict[str, Any]:
    # Owned by the PostgresServer (cluster-scoped owners may own namespaced objects): deleting the server
    # collects them.
    return {"name": object_name(key), "namespace": namespace, "labels": labels(key),
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": "PostgresServer", "name": server,
                                 "uid": server_uid, "controller": True, "blockOwnerDeletion": False}]}


def render_odoo_conf(key: str, endpoint: DatabaseEndpoint) -> str:
    """What specs.app.render_odoo_conf says for a database, for the template's role and database."""
    name = database_name(key)
    options = {
        "db_host": endpoint.host,
        "db_port": str(endpoint.port),
        "db_user": name,
        "db_sslmode": endpoint.ssl_mode,
        "addons_path": ODOO_EXTRA_ADDONS,
        "data_dir": ODOO_DATA_DIR,
        "list_db": "False",
        "dbfilter": f"^{name}$",
        "db_name": name,
    }
    return "\n".join(["[options]"] + [f"{k} = {v}" for k, v in options.items()]) + "\n"


def build_objects(key: str, namespace: str, server: str, server_uid: str, image: str, endpoint: DatabaseEndpoint,
                  password: str) -> list[dict[str, Any]]:
    """The Secret (the role's password, for libpq as PGPASSWORD) and the Job (odoo.conf in its pods'
    template, as a database's: specs.app.pod_annotations)."""
    metadata = _metadata(key, namespace, server, server_uid)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
              "data": {"password": base64.b64encode(password.encode()).decode()}}
    conf = {"path": "odoo.conf", "fieldRef": {"fieldPath": f"metadata.annotations['{ODOO_CONF_ANNOTATION}']"}}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,  # a failed build is reported and built again later, from scratch
            "activeDeadlineSeconds": JOB_DEADLINE_SECONDS,
            "template": {
                "metadata": {"labels": labels(key),
                             "annotations": {ODOO_CONF_ANNOTATION: render_odoo_conf(key, endpoint)}},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": POD_SECURITY_CONTEXT,
                    "containers": [{
                        "name": COMPONENT,
                        "image": image,
                        "command": ["/bin/bash", "-c", TEMPLATE_SCRIPT],
                        "env": [
                            {"name": "PGDATABASE", "value": database_name(key)},
                            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": object_name(key),
                                                                                  "key": "password"}}},
                        ],
                        "volumeMounts": [
                            {"name": "data", "mountPath": ODOO_DATA_DIR},
                            {"name": "config", "mountPath": "/etc/odoo", "readOnly": True},
                        ],
                        "securityContext": CONTAINER_SECURITY_CONTEXT,
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }],
                    "volumes": [
                        {"name": "data", "emptyDir": {}},
                        {"name": "config", "downwardAPI": {"items": [conf]}},
                    ],
                },
            },
        },
    }
    assert ODOO_CONF == "/etc/odoo/odoo.conf"  # the script's -c
    return [secret, job]

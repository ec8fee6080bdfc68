"""odoo-db-operator: Odoo Online's database manager as a Kubernetes operator."""

GROUP = "odoo.dbmanager.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "odoo-db-operator"

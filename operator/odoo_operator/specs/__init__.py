"""Pure builders: a parsed model in, the Kubernetes objects to apply out. No I/O."""
from odoo_operator.specs import app, backup, routes, upgrade

__all__ = ["app", "backup", "routes", "upgrade"]

"""The reconcilers: one module per kind and concern, driven by the loops of `odoo_operator.loop`."""

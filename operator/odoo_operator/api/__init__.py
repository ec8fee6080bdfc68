"""Typed models of the kinds of odoo.dbmanager.io: parsed once at the edge, read everywhere after."""

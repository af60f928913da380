"""One module per dashboard page.

Each module has ``NAV`` (its menu entry, ``(label, href)``, or None) and
``add_routes(router)``. ``adapters/admin/routes.py`` lists them; a new page
(knowledge base, ...) is a new module added to that list.
"""

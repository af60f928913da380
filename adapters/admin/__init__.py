"""The admin dashboard at ``/admin``: server-rendered pages, one module per page."""

"""Audit of actions page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import audit_page, page

page(audit_page)

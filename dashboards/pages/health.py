"""Health & alerts page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import health_page, page

page(health_page)

"""Health & alerts page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import health_page

health_page()

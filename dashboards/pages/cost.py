"""Cost page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import cost_page

cost_page()

"""Cost page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import cost_page, page

page(cost_page)

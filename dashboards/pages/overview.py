"""Overview page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import overview_page, page

page(overview_page)

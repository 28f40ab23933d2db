"""Review page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import page, review_page

page(review_page)

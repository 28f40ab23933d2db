"""Decisions & confidence page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import decisions_page, page

page(decisions_page)

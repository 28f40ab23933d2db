"""Traces page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import page, traces_page

page(traces_page)

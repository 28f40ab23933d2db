"""Traces page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import traces_page

traces_page()

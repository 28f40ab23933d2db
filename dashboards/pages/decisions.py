"""Decisions & confidence page (see agentwatch.dashboards._views)."""

from agentwatch.dashboards._views import decisions_page

decisions_page()

"""agentwatch.dashboards: the Streamlit dashboard.

``app.py`` is the entry point (``streamlit run``; ``agentwatch up`` starts it with
``AGENTWATCH_CLICKHOUSE_URL`` set); ``pages/`` holds one thin file per page. The pages live in
``_views``, the cached reads in ``_data``, the plotly figures in ``_figures`` and the number
formats and KPI tiles in ``_format``. Every SQL statement is in ``agentwatch.storage``: the
pages' queries in ``_overview_queries``, ``_cost_queries``, ``_decision_queries``,
``_trace_queries`` and ``_sidebar_queries``, the alerts' and health checks' in
``_alert_queries`` and ``_health_queries``.
"""

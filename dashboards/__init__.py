"""agentwatch.dashboards: the Streamlit dashboard.

``app.py`` is the entry point (``streamlit run``; ``agentwatch up`` starts it with
``AGENTWATCH_CLICKHOUSE_URL`` set); ``pages/`` holds one thin file per page. The pages live in
``_views``, the cached reads in ``_data``, the plotly figures in ``_figures`` and the number
formats and KPI tiles in ``_format``. Every SQL statement is in ``agentwatch.storage._queries``.
"""

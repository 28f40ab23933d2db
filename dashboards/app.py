"""The agentwatch dashboard: ``streamlit run app.py`` (``agentwatch up`` does it for you).

Reads ClickHouse at ``AGENTWATCH_CLICKHOUSE_URL`` (default http://127.0.0.1:8123/agentwatch, the
collector's read-only query endpoint). The sidebar's filters apply to every page.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from agentwatch.dashboards._views import sidebar

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="agentwatch", page_icon="🔭", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "overview.py", title="Overview", icon="📊", default=True),
        st.Page(PAGES / "cost.py", title="Cost", icon="💵"),
        st.Page(PAGES / "decisions.py", title="Decisions & confidence", icon="🎯"),
        st.Page(PAGES / "traces.py", title="Traces", icon="🧵"),
        st.Page(PAGES / "health.py", title="Health & alerts", icon="🩺"),
    ]
)
sidebar()
navigation.run()

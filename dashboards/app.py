"""The agentwatch dashboard: ``streamlit run app.py`` (``agentwatch up`` does it for you).

Reads ClickHouse at ``AGENTWATCH_CLICKHOUSE_URL`` (default http://127.0.0.1:8123/agentwatch, the
collector's read-only query endpoint). The sidebar's filters apply to every page.
"""

from __future__ import annotations

import streamlit as st

from agentwatch.dashboards._views import shell

st.set_page_config(page_title="agentwatch", page_icon=":material/visibility:", layout="wide")
shell()

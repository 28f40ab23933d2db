"""The dashboard's login: a password, required whenever ``AGENTWATCH_DASHBOARD_PASSWORD`` is set.

``agentwatch up`` sets it when the dashboard listens beyond loopback (it refuses to start there
without one). The password is compared in constant time; a signed-in browser session stays
signed in until it ends or the user signs out.
"""

from __future__ import annotations

import hmac
import os
from typing import Final

import streamlit as st

ENV_PASSWORD: Final = "AGENTWATCH_DASHBOARD_PASSWORD"  # noqa: S105 - a variable name
_SIGNED_IN: Final = "agentwatch_signed_in"


def required_password() -> str | None:
    return os.environ.get(ENV_PASSWORD) or None


def signed_in() -> bool:
    """True when no password is required or this session gave it; otherwise show the form."""
    password = required_password()
    if password is None or st.session_state.get(_SIGNED_IN):
        return True
    st.title("agentwatch")
    with st.form("login"):
        offered = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if hmac.compare_digest(offered.encode(), password.encode()):
            st.session_state[_SIGNED_IN] = True
            st.rerun()
        st.error("Wrong password.")
    return False


def sign_out_button() -> None:
    if required_password() is not None and st.sidebar.button("Sign out"):
        st.session_state.pop(_SIGNED_IN, None)
        st.rerun()

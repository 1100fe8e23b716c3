"""Zhiku web UI entry point: `streamlit run ui/app.py -- --api-url http://127.0.0.1:8000`.

Log-in state and the one API client live in session state; pages are plain scripts over it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import streamlit as st

from ui.client import ApiError, ZhikuClient

PAGES_DIR = Path(__file__).resolve().parent / "pages"


def api_url() -> str:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", default="http://127.0.0.1:8000")
    return parser.parse_known_args(sys.argv[1:])[0].api_url


st.set_page_config(page_title="知库 Zhiku", page_icon="📚", layout="wide")
if "client" not in st.session_state:
    st.session_state.client = ZhikuClient(api_url())
client = st.session_state.client

if client.user is None:
    st.title("知库 Zhiku")
    with st.form("login"):
        username = st.text_input("用户名 Username", key="login_username")
        password = st.text_input("密码 Password", type="password", key="login_password")
        submitted = st.form_submit_button("登录 Log in")
    if submitted:
        try:
            client.login(username, password)
            st.rerun()
        except ApiError as exc:
            st.error(exc.message)
    st.stop()

with st.sidebar:
    st.caption(f"👤 {client.user['username']} ({client.user['role']})")
    if st.button("退出 Log out", key="logout"):
        del st.session_state["client"]
        st.rerun()

pages = [
    st.Page(PAGES_DIR / "ask.py", title="提问 Ask", icon="💬", default=True),
    st.Page(PAGES_DIR / "documents.py", title="文档 Documents", icon="📄"),
]
if client.user["role"] == "admin":  # the server refuses these calls to anyone else anyway
    pages.append(st.Page(PAGES_DIR / "sensitive.py", title="敏感内容 Sensitive", icon="🛡️"))
    pages.append(st.Page(PAGES_DIR / "audit.py", title="审计与反馈 Audit", icon="🧾"))
    pages.append(st.Page(PAGES_DIR / "users.py", title="用户与群组 Users", icon="👥"))
navigation = st.navigation(pages)
navigation.run()

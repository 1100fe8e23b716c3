"""Widgets shared by the pages."""

from __future__ import annotations

import streamlit as st

from ui.client import ApiError, ZhikuClient


def knowledge_bases_or_stop(client: ZhikuClient) -> list[dict]:
    """The knowledge bases, or the server's error shown in place of the page."""
    try:
        return client.list_kbs()
    except ApiError as exc:
        st.error(exc.message)
        st.stop()


def citation_list(citations: list[dict]) -> None:
    """Numbered sources, each expanding to its document, page, section and the cited passage."""
    for citation in citations:
        where = citation["document"] + (f" · 第 {citation['page']} 页 p. {citation['page']}" if citation.get("page") else "")
        with st.expander(f"[{citation['n']}] {where}", expanded=False):
            if citation.get("section"):
                st.caption(citation["section"])
            st.markdown(citation.get("snippet", ""))
            if citation.get("supported") is False:
                st.warning("这句引用与原文的重合度较低 / weakly supported by this source")
            st.caption(f"相关度 score {citation.get('score', 0):.3f}")


REFUSAL_REASONS = {
    "threshold": "没有与问题足够相关的资料 / No source is close enough to the question.",
    "judge": "模型判断检索到的资料不包含答案 / The model judged that the retrieved sources do not hold the answer.",
}


def render_answer(message: dict) -> None:
    if message.get("reasoning"):
        with st.expander("思考过程 Reasoning", expanded=False):
            st.markdown(message["reasoning"])
    if message.get("error"):
        st.error(message["error"])
    elif message.get("refused"):
        st.info(message.get("answer") or "资料中没有找到答案 / The documents do not contain the answer.")
        why = REFUSAL_REASONS.get(message.get("refused_by"))
        if why:
            st.caption(why)
    else:
        st.markdown(message.get("answer", ""))
    citation_list(message.get("citations", []))

"""Audit log and feedback (admins): filter who did what when, export it as CSV, read answer feedback.
The server records, filters and exports; this page only asks."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import streamlit as st

from ui.client import ApiError

client = st.session_state.client
ACTIONS = ["", "ask", "auth.", "auth.login_failed", "document.", "acl.", "group.", "user.", "feedback",
           "sensitive."]


def day_start(day: date | None, *, next_day: bool = False) -> str | None:
    """Midnight UTC of the chosen day (the day after, for an inclusive end)."""
    if day is None:
        return None
    return (datetime.combine(day, time.min, tzinfo=timezone.utc) + timedelta(days=int(next_day))).isoformat()


st.title("🧾 审计与反馈 Audit & feedback")
log_tab, feedback_tab = st.tabs(["审计日志 Audit log", "反馈 Feedback"])

with log_tab:
    user_col, action_col, since_col, until_col = st.columns(4)
    filters = {
        "username": user_col.text_input("用户 User", key="audit_user").strip(),
        "action": action_col.selectbox("操作 Action", ACTIONS, format_func=lambda a: a or "全部 all",
                                       key="audit_action"),
        "since": day_start(since_col.date_input("从 From (UTC)", value=None, key="audit_since")),
        "until": day_start(until_col.date_input("到 To (UTC)", value=None, key="audit_until"), next_day=True),
    }
    page = st.number_input("页 Page", min_value=1, value=1, key="audit_page")
    try:
        events = client.audit_events(filters, offset=(page - 1) * 100)
        exported = client.audit_csv(filters)
    except ApiError as exc:
        st.error(exc.message)
    else:
        st.download_button("导出 CSV Export", exported, file_name="zhiku-audit.csv", mime="text/csv",
                           key="audit_export")
        if not events:
            st.caption("没有符合条件的记录 / no events match")
        st.dataframe([{"time": e["at"], "user": e["username"], "action": e["action"], "kb": e["kb_id"],
                       "document": e["document_id"], "detail": e["detail"]} for e in events],
                     use_container_width=True)

with feedback_tab:
    try:
        feedback = client.feedback()
    except ApiError as exc:
        st.error(exc.message)
    else:
        if not feedback:
            st.caption("还没有反馈 / no feedback yet")
        for item in feedback:
            thumb = "👍" if item["is_positive"] else "👎"
            with st.expander(f"{thumb} {item['username']} · {item['at'][:19]} · {item['question'][:60]}"):
                st.markdown(f"**问题 Question**: {item['question']}")
                st.markdown(f"**回答 Answer**: {item['answer']}")
                if item["comment"]:
                    st.markdown(f"**意见 Comment**: {item['comment']}")
                st.caption(f"引用 cited chunks: {item['cited_chunk_ids']} · "
                           f"question #{item['question_event_id']}")

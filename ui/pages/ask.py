"""Ask: chat over the selected knowledge bases with streamed, cited answers, and thumbs up/down on each.
Follow-ups carry the chat so far (the server searches their standalone form); the sidebar narrows
the documents by file type and upload date."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import streamlit as st

from ui.client import ApiError
from ui.components import knowledge_bases_or_stop, render_answer

client = st.session_state.client
history: list[dict] = st.session_state.setdefault("history", [])
# Sent with each question; the server keeps fewer (history_max_messages), this bounds the request.
MAX_HISTORY_SENT = 20

st.title("💬 提问 Ask")
kbs = knowledge_bases_or_stop(client)
if not kbs:
    st.info("还没有知识库，请先在“文档”页上传文件。 No knowledge base yet: upload files on the Documents page.")
    st.stop()


def feedback_buttons(message: dict) -> None:
    """👍/👎 and an optional comment, sent once per answer (the server ties it to the asker's question)."""
    question_id = message.get("question_id")
    if question_id is None:
        return
    if message.get("feedback_sent"):
        st.caption("感谢反馈 / thanks for the feedback")
        return
    comment = st.text_input("意见（可选） Comment (optional)", key=f"feedback_comment_{question_id}")
    up_col, down_col, _ = st.columns([1, 1, 8])
    for column, is_positive, label in ((up_col, True, "👍"), (down_col, False, "👎")):
        if column.button(label, key=f"feedback_{'up' if is_positive else 'down'}_{question_id}"):
            try:
                client.submit_feedback(question_id, is_positive=is_positive, question=message["question"],
                                       answer=message.get("answer", ""), comment=comment)
                message["feedback_sent"] = True
                st.rerun()
            except ApiError as exc:
                st.error(exc.message)


def chat_so_far() -> list[dict]:
    """The earlier turns as the API takes them: questions, and the answers that were given."""
    turns = [{"role": "user", "content": m["content"]} if m["role"] == "user"
             else {"role": "assistant", "content": m.get("answer", "")} for m in history]
    return [turn for turn in turns if turn["content"]][-MAX_HISTORY_SENT:]


def utc_midnight(day: date) -> str:
    return datetime.combine(day, time(), timezone.utc).isoformat()


def sidebar_filters() -> dict | None:
    """File types and an upload date range (whole days, UTC); None when nothing narrows."""
    types = st.sidebar.text_input("文件类型 File types", placeholder="pdf, docx", key="ask_types")
    days = st.sidebar.date_input("上传日期 Uploaded between", value=(), key="ask_dates")
    filters: dict = {"file_types": [t.strip() for t in types.replace("，", ",").split(",") if t.strip()]}
    if len(days) == 2:  # both ends picked; the whole last day is included
        first, last = days
        filters.update(created_from=utc_midnight(first), created_to=utc_midnight(last + timedelta(days=1)))
    return filters if filters["file_types"] or len(days) == 2 else None


def searched_caption(message: dict) -> None:
    if message.get("rewritten"):
        st.caption(f"🔎 检索问题 Searched as: {message['searched_query']}")


names = {kb["id"]: kb["name"] for kb in kbs}
kb_ids = st.sidebar.multiselect("知识库 Knowledge bases", options=list(names), default=list(names),
                                format_func=names.get, key="ask_kbs")
filters = sidebar_filters()

for message in history:
    with st.chat_message(message["role"]):
        if message["role"] == "user":
            st.markdown(message["content"])
        else:
            searched_caption(message)
            render_answer(message)
            feedback_buttons(message)

question = st.chat_input("输入问题… Ask a question about your documents", key="ask_input")
if question:
    if not kb_ids:
        st.warning("请至少选择一个知识库 / Select at least one knowledge base.")
        st.stop()
    earlier = chat_so_far()
    history.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(question)
    answer: dict = {"role": "assistant", "question": question, "answer": "", "reasoning": "", "citations": []}
    with st.chat_message("assistant"):
        reasoning_box, answer_box = st.empty(), st.empty()
        try:
            for kind, data in client.ask(question, kb_ids, history=earlier, filters=filters):
                if kind == "sources":
                    answer.update(searched_query=data.get("searched_query"), rewritten=data.get("rewritten"))
                elif kind == "reasoning":
                    answer["reasoning"] += data["text"]
                    reasoning_box.caption("🤔 " + answer["reasoning"][-300:])
                elif kind == "token":
                    answer["answer"] += data["text"]
                    answer_box.markdown(answer["answer"] + "▌")
                elif kind == "done":
                    answer.update(answer=data["answer"], reasoning=data["reasoning"], refused=data["refused"],
                                  refused_by=data.get("refused_by"), citations=data["citations"],
                                  question_id=data.get("question_id"))
                elif kind == "error":
                    answer.update(error=data["message"], question_id=data.get("question_id"))
        except ApiError as exc:
            answer["error"] = exc.message
        reasoning_box.empty()
        answer_box.empty()
        searched_caption(answer)
        render_answer(answer)
        feedback_buttons(answer)
    history.append(answer)

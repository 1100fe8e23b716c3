"""Ask: chat over the selected knowledge bases with streamed, cited answers."""

from __future__ import annotations

import streamlit as st

from ui.client import ApiError
from ui.components import knowledge_bases_or_stop, render_answer

client = st.session_state.client
history: list[dict] = st.session_state.setdefault("history", [])

st.title("💬 提问 Ask")
kbs = knowledge_bases_or_stop(client)
if not kbs:
    st.info("还没有知识库，请先在“文档”页上传文件。 No knowledge base yet: upload files on the Documents page.")
    st.stop()

names = {kb["id"]: kb["name"] for kb in kbs}
kb_ids = st.sidebar.multiselect("知识库 Knowledge bases", options=list(names), default=list(names),
                                format_func=names.get, key="ask_kbs")

for message in history:
    with st.chat_message(message["role"]):
        if message["role"] == "user":
            st.markdown(message["content"])
        else:
            render_answer(message)

question = st.chat_input("输入问题… Ask a question about your documents", key="ask_input")
if question:
    if not kb_ids:
        st.warning("请至少选择一个知识库 / Select at least one knowledge base.")
        st.stop()
    history.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(question)
    answer: dict = {"role": "assistant", "answer": "", "reasoning": "", "citations": []}
    with st.chat_message("assistant"):
        reasoning_box, answer_box = st.empty(), st.empty()
        try:
            for kind, data in client.ask(question, kb_ids):
                if kind == "reasoning":
                    answer["reasoning"] += data["text"]
                    reasoning_box.caption("🤔 " + answer["reasoning"][-300:])
                elif kind == "token":
                    answer["answer"] += data["text"]
                    answer_box.markdown(answer["answer"] + "▌")
                elif kind == "done":
                    answer.update(answer=data["answer"], reasoning=data["reasoning"],
                                  refused=data["refused"], citations=data["citations"])
                elif kind == "error":
                    answer["error"] = data["message"]
        except ApiError as exc:
            answer["error"] = exc.message
        reasoning_box.empty()
        answer_box.empty()
        render_answer(answer)
    history.append(answer)

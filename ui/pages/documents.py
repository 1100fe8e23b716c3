"""Documents: knowledge bases, multi-file upload, per-file ingestion state, delete and re-index, and
who may read a knowledge base or one document (editors and admins; the server decides who may)."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from ui.client import ApiError
from ui.components import knowledge_bases_or_stop

client = st.session_state.client
STATE_LABELS = {
    "queued": "⏳ 排队 queued", "extracting": "📖 解析 extracting", "chunking": "✂️ 分块 chunking",
    "embedding": "🧮 向量化 embedding", "indexing": "🗂️ 索引 indexing", "indexed": "✅ 已索引 indexed",
    "failed": "❌ 失败 failed",
}
FINAL_STATES = {"indexed", "failed"}

st.title("📄 文档 Documents")
kbs = knowledge_bases_or_stop(client)

with st.sidebar.expander("新建知识库 New knowledge base", expanded=not kbs):
    with st.form("new_kb", clear_on_submit=True):
        new_name = st.text_input("名称 Name", key="new_kb_name")
        if st.form_submit_button("创建 Create") and new_name.strip():
            try:
                client.create_kb(new_name.strip())
                st.rerun()
            except ApiError as exc:
                st.error(exc.message)
if not kbs:
    st.stop()

names = {kb["id"]: kb["name"] for kb in kbs}
kb_id = st.selectbox("知识库 Knowledge base", options=list(names), format_func=names.get, key="docs_kb")

uploads = st.file_uploader("上传文件（可多选） Upload files", accept_multiple_files=True, key="docs_upload")
if uploads and st.button(f"上传 {len(uploads)} 个文件 Upload", key="docs_upload_button"):
    try:
        client.upload(kb_id, [(f.name, f.getvalue()) for f in uploads])
        st.success(f"已加入队列 {len(uploads)} 个文件 / queued")
    except ApiError as exc:
        st.error(exc.message)


def readers_of(text: str) -> list[str]:
    return [part.strip() for part in text.replace("，", ",").split(",") if part.strip()]


def readers_form(key: str, label: str, value: str, save) -> None:  # noqa: ANN001
    """One readers field with its Save button (keys `{key}_readers`, `{key}_save`)."""
    with st.form(key):
        text = st.text_input(label, value=value, key=f"{key}_readers")
        if st.form_submit_button("保存 Save", key=f"{key}_save"):
            try:
                save(readers_of(text))
                st.success("已保存 saved")
            except ApiError as exc:
                st.error(exc.message)


def permissions(documents: list[dict]) -> None:
    """Principals: public, user:<name>, group:<name>, comma-separated."""
    try:
        kb_readers = client.kb_acl(kb_id)["readers"]
    except ApiError as exc:
        st.caption(exc.message)
        return
    readers_form("kb_acl", "知识库读者 Knowledge-base readers (public, user:名字, group:组名)",
                 ", ".join(kb_readers), lambda readers: client.set_kb_acl(kb_id, readers))
    if not documents:
        return
    by_id = {doc["id"]: doc["filename"] for doc in documents}
    doc_id = st.selectbox("文档 Document", list(by_id), format_func=by_id.get, key="doc_acl_document")
    try:
        current = client.document_acl(doc_id)
    except ApiError as exc:
        st.error(exc.message)
        return
    readers_form("doc_acl", "文档读者（留空则继承知识库） Document readers (empty: inherit the knowledge base's)",
                 "" if current["inherited"] else ", ".join(current["readers"]),
                 lambda readers: client.set_document_acl(doc_id, readers))


if client.user["role"] in ("admin", "editor"):
    with st.expander("🔒 权限 Permissions", expanded=False):
        try:
            permissions(client.list_documents(kb_id))
        except ApiError as exc:
            st.error(exc.message)


@st.fragment(run_every=timedelta(seconds=2))
def document_table() -> None:
    try:
        documents = client.list_documents(kb_id)
    except ApiError as exc:
        st.error(exc.message)
        return
    if not documents:
        st.caption("这个知识库还没有文档 / no documents yet")
        return
    for doc in documents:
        name_col, state_col, chunks_col, actions_col = st.columns([4, 3, 1, 2])
        name_col.markdown(f"**{doc['filename']}**  \nv{doc['version']} · {doc['size_bytes'] / 1024:.0f} KB")
        state_col.markdown(STATE_LABELS.get(doc["state"], doc["state"]))
        if doc["state"] not in FINAL_STATES:
            state_col.progress(min(max(doc["progress"], 0.0), 1.0))
        if doc["error"]:
            state_col.caption(doc["error"])
        chunks_col.markdown(str(doc["num_chunks"]))
        if actions_col.button("重建 Reindex", key=f"reindex_{doc['id']}"):
            client.reindex(doc["id"])
        if actions_col.button("删除 Delete", key=f"delete_{doc['id']}"):
            client.delete_document(doc["id"])
            st.rerun(scope="fragment")


document_table()

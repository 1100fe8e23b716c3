"""Sensitive content (admins): term lists, policies per stage / knowledge base / role, a test box, and
which documents hold what. Every change is enforced and audited by the server."""

from __future__ import annotations

import json

import streamlit as st

from ui.client import ApiError

client = st.session_state.client
ACTIONS = ["allow", "mask", "redact", "block"]
ROLES = [None, "admin", "editor", "employee"]
KINDS = ["CN_ID", "CN_MOBILE", "CN_LANDLINE", "BANK_CARD", "IBAN", "EMAIL", "IPV4", "IPV6", "USCC",
         "CN_PASSPORT", "CN_PLATE", "API_KEY", "PRIVATE_KEY", "PASSWORD", "SECRET", "TERM", "MARKING"]


def any_label(value: object) -> str:
    return "全部 any" if value is None else str(value)


st.title("🛡️ 敏感内容 Sensitive content")
try:
    kbs = client.list_kbs()
    policies = client.sensitive_policies()
except ApiError as exc:
    st.error(exc.message)
    st.stop()
kb_names = {None: "全部知识库 all KBs", **{kb["id"]: kb["name"] for kb in kbs}}
test_tab, policy_tab, terms_tab, docs_tab = st.tabs(
    ["测试 Test", "策略 Policies", "敏感词 Terms", "文档发现 Findings"])

with test_tab:
    text = st.text_area("粘贴文本 Paste text", key="sens_test_text", height=150)
    col_stage, col_kb, col_role = st.columns(3)
    stage = col_stage.selectbox("阶段 Stage", ["answer", "ingest"], key="sens_test_stage")
    kb_id = col_kb.selectbox("知识库 KB", list(kb_names), format_func=kb_names.get, key="sens_test_kb")
    role = col_role.selectbox("角色 Role", ROLES, format_func=any_label, key="sens_test_role")
    if st.button("检测 Detect", key="sens_test_button") and text.strip():
        try:
            result = client.test_sensitive(text, stage=stage, kb_id=kb_id, role=role)
        except ApiError as exc:
            st.error(exc.message)
        else:
            if result["blocked"]:
                st.error("此文本会被拦截 / this text would be blocked")
            st.markdown("**结果 Result**")
            st.code(result["result"], language=None)
            st.dataframe([{k: f[k] for k in ("kind", "text", "start", "end", "confidence", "category")}
                          for f in result["findings"]], use_container_width=True)

with policy_tab:
    st.caption("未设置的类型沿用内置默认 / kinds not set keep the built-in default: "
               + json.dumps(policies["builtin"], ensure_ascii=False))
    st.dataframe(policies["policies"], use_container_width=True)
    with st.form("sens_policy"):
        col_stage, col_kb, col_role = st.columns(3)
        p_stage = col_stage.selectbox("阶段 Stage", ["answer", "ingest"], key="sens_policy_stage")
        p_kb = col_kb.selectbox("知识库 KB", list(kb_names), format_func=kb_names.get, key="sens_policy_kb")
        p_role = col_role.selectbox("角色 Role", ROLES, format_func=any_label, key="sens_policy_role")
        chosen = {}
        columns = st.columns(4)
        for i, kind in enumerate(KINDS):
            action = columns[i % 4].selectbox(kind, ["—"] + ACTIONS, key=f"sens_policy_{kind}")
            if action != "—":
                chosen[kind] = action
        extra = st.text_input("按敏感词类别 By term category, e.g. TERM:project=block", key="sens_policy_extra")
        for item in filter(None, (part.strip() for part in extra.split(","))):
            key, _, value = item.partition("=")
            chosen[key.strip()] = value.strip()
        default = st.selectbox("其余类型 Other kinds", ACTIONS, key="sens_policy_default")
        if st.form_submit_button("保存 Save"):
            try:
                client.set_sensitive_policy({"stage": p_stage, "kb_id": p_kb, "role": p_role,
                                             "actions": chosen, "default_action": default})
                st.success("已保存 saved")
                st.rerun()
            except ApiError as exc:
                st.error(exc.message)

with terms_tab:
    with st.form("sens_terms", clear_on_submit=True):
        upload = st.file_uploader("导入 TXT（每行一个）或 CSV（term,category,severity） Import", type=["txt", "csv"],
                                  key="sens_terms_file")
        col_cat, col_sev = st.columns(2)
        category = col_cat.text_input("类别 Category", value="default", key="sens_terms_category")
        severity = col_sev.selectbox("级别 Severity", ["medium", "high", "low"], key="sens_terms_severity")
        if st.form_submit_button("导入 Import") and upload is not None:
            try:
                counts = client.import_sensitive_terms(upload.name, upload.getvalue(), category, severity)
                st.success(f"新增 added {counts['added']} · 更新 updated {counts['updated']}")
            except ApiError as exc:
                st.error(exc.message)
    page = st.number_input("页 Page", min_value=1, value=1, key="sens_terms_page")
    try:
        listed = client.sensitive_terms(offset=(page - 1) * 100)
    except ApiError as exc:
        st.error(exc.message)
    else:
        st.caption(f"共 {listed['total']} 个 / {listed['total']} terms")
        for term in listed["terms"]:
            col_term, col_meta, col_delete = st.columns([4, 3, 1])
            col_term.write(term["term"])
            col_meta.caption(f"{term['category']} · {term['severity']}")
            if col_delete.button("删除", key=f"sens_term_delete_{term['id']}"):
                client.delete_sensitive_term(term["id"])
                st.rerun()

with docs_tab:
    kb_choice = st.selectbox("知识库 KB", [kb["id"] for kb in kbs], format_func=kb_names.get, key="sens_docs_kb")
    if kb_choice is not None:
        try:
            found = client.sensitive_documents(kb_choice)
        except ApiError as exc:
            st.error(exc.message)
        else:
            if not found:
                st.caption("没有发现敏感内容 / nothing found")
            st.dataframe([{"document": d["document"], "redacted chunks": d["redacted_chunks"],
                           **d["findings"]} for d in found], use_container_width=True)

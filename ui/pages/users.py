"""Users and groups (admins): accounts with their role, groups and their members. Group names are
what `group:<name>` in a knowledge base's or document's readers means (Documents page)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.client import ApiError

client = st.session_state.client
ROLES = ["employee", "editor", "admin"]

st.title("👥 用户与群组 Users and groups")
try:
    users = client.list_users()
    groups = client.list_groups()
except ApiError as exc:
    st.error(exc.message)
    st.stop()


def run(action, success: str) -> None:  # noqa: ANN001
    try:
        action()
    except ApiError as exc:
        st.error(exc.message)
        return
    st.success(success)
    st.rerun()


st.subheader("用户 Users")
st.dataframe(pd.DataFrame([{"username": u["username"], "role": u["role"], "groups": ", ".join(u["groups"])}
                           for u in users], columns=["username", "role", "groups"]), hide_index=True)
with st.form("new_user", clear_on_submit=True):
    st.caption("新用户 New user (密码至少 8 位 / password of at least 8 characters)")
    username = st.text_input("用户名 Username", key="new_username")
    password = st.text_input("初始密码 Initial password", type="password", key="new_password")
    role = st.selectbox("角色 Role", ROLES, key="new_role")
    if st.form_submit_button("创建 Create", key="create_user"):
        run(lambda: client.create_user(username, password, role), f"已创建 created {username}")

st.subheader("群组 Groups")
with st.form("new_group", clear_on_submit=True):
    group_name = st.text_input("群组名 Group name", key="new_group_name")
    if st.form_submit_button("创建群组 Create group", key="create_group"):
        run(lambda: client.create_group(group_name), f"已创建 created group:{group_name}")
usernames = [u["username"] for u in users]
for group in groups:
    with st.expander(f"group:{group['name']} — {len(group['members'])} 人 members"):
        chosen = st.multiselect("成员 Members", usernames, default=group["members"], key=f"members_{group['name']}")
        if st.button("保存 Save", key=f"save_members_{group['name']}"):
            def save(group: dict = group, chosen: list[str] = chosen) -> None:
                for name in set(chosen) ^ set(group["members"]):
                    client.set_member(group["name"], name, is_member=name in chosen)
            run(save, f"已保存 saved group:{group['name']}")

"""Admin surfaces for accounts and groups (group names are what `group:<name>` principals name)."""

from fastapi import APIRouter

from app.deps import AdminUser, SessionDep
from app.models import Role
from app.schemas import GroupCreate, GroupPublic, UserAdminPublic, UserCreate
from app.services import users
from app.services.audit import record

router = APIRouter(prefix="/api/admin", tags=["users and groups"])


@router.get("/users")
def list_users(session: SessionDep, _admin: AdminUser) -> list[UserAdminPublic]:
    return [UserAdminPublic(id=u.id, username=u.username, role=u.role.value, groups=groups)
            for u, groups in users.list_users(session)]


@router.post("/users", status_code=201)
def create_user(body: UserCreate, session: SessionDep, admin: AdminUser) -> UserAdminPublic:
    user = users.create_user(session, username=body.username, password=body.password, role=Role(body.role))
    record(session, "user.create", user=admin, created=user.username, role=body.role)
    return UserAdminPublic(id=user.id, username=user.username, role=user.role.value, groups=[])


@router.get("/groups")
def list_groups(session: SessionDep, _admin: AdminUser) -> list[GroupPublic]:
    return [GroupPublic(id=g.id, name=g.name, members=members) for g, members in users.list_groups(session)]


@router.post("/groups", status_code=201)
def create_group(body: GroupCreate, session: SessionDep, admin: AdminUser) -> GroupPublic:
    group = users.create_group(session, body.name)
    record(session, "group.create", user=admin, group=group.name)
    return GroupPublic(id=group.id, name=group.name, members=[])


@router.delete("/groups/{name}", status_code=204)
def delete_group(name: str, session: SessionDep, admin: AdminUser) -> None:
    users.delete_group(session, name)
    record(session, "group.delete", user=admin, group=name)


@router.put("/groups/{name}/members/{username}", status_code=204)
def add_member(name: str, username: str, session: SessionDep, admin: AdminUser) -> None:
    users.add_member(session, name, username)
    record(session, "group.member.add", user=admin, group=name, member=username)


@router.delete("/groups/{name}/members/{username}", status_code=204)
def remove_member(name: str, username: str, session: SessionDep, admin: AdminUser) -> None:
    users.remove_member(session, name, username)
    record(session, "group.member.remove", user=admin, group=name, member=username)

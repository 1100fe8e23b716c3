from fastapi import APIRouter

from app.deps import CurrentUser, SessionDep, SettingsDep
from app.schemas import LoginRequest, LoginResponse, UserPublic
from app.services import users

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/login")
def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> LoginResponse:
    token, user = users.login(session, username=body.username, password=body.password, ttl_s=settings.token_ttl_s)
    return LoginResponse(token=token, user=UserPublic.model_validate(user))


@router.get("/me")
def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)

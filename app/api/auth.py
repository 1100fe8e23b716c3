from fastapi import APIRouter, Request

from app.deps import CurrentUser, SessionDep, SettingsDep
from app.errors import ZhikuError
from app.schemas import LoginRequest, LoginResponse, UserPublic
from app.services import users

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/login")
def login(body: LoginRequest, request: Request, session: SessionDep, settings: SettingsDep) -> LoginResponse:
    # The address the connection comes from; behind a reverse proxy that is the proxy (docs/security.md).
    address = request.client.host if request.client else None
    try:
        token, user = users.login(session, username=body.username, password=body.password,
                                  ttl_s=settings.token_ttl_s, address=address,
                                  limits=users.LoginLimits.from_settings(settings))
    except ZhikuError:
        session.commit()  # the failure count and its audit event must outlive the refused request
        raise
    return LoginResponse(token=token, user=UserPublic.model_validate(user))


@router.get("/me")
def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)

from fastapi import APIRouter
from sqlalchemy import text

from app.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep) -> dict:
    session.execute(text("SELECT 1"))
    return {"status": "ok"}

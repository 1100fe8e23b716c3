from fastapi import APIRouter

from app.deps import CurrentUser, SessionDep
from app.schemas import FeedbackCreate
from app.services import feedback

router = APIRouter(prefix="/api", tags=["feedback"])


@router.post("/feedback", status_code=201)
def submit(body: FeedbackCreate, session: SessionDep, user: CurrentUser) -> dict:
    row = feedback.submit(session, user, question_id=body.question_id, is_positive=body.is_positive,
                          question=body.question, answer=body.answer, comment=body.comment)
    return {"id": row.id}

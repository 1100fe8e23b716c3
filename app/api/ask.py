import json
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from app.deps import CurrentUser, SessionDep
from app.schemas import AskRequest
from app.services.documents import get_kb

router = APIRouter(prefix="/api", tags=["ask"])


@router.post("/ask")
def ask(body: AskRequest, request: Request, session: SessionDep, user: CurrentUser) -> StreamingResponse:
    for kb_id in body.kb_ids:
        get_kb(session, kb_id, user)  # a KB the user may not read does not exist for them
    answering = request.app.state.answering

    def events() -> Iterator[str]:
        history = [turn.model_dump() for turn in body.history]
        for event in answering.stream(body.question, body.kb_ids, top_k=body.top_k, user=user,
                                      history=history, filters=body.filters):
            yield f"event: {event.type}\ndata: {json.dumps(event.data, ensure_ascii=False)}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

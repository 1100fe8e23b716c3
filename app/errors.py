"""One error type for business code; one handler turns it into a stable JSON body and HTTP status."""

from __future__ import annotations

import enum

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class ErrorCode(str, enum.Enum):
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    BAD_CREDENTIALS = "BAD_CREDENTIALS"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    GROUP_NOT_FOUND = "GROUP_NOT_FOUND"
    GROUP_EXISTS = "GROUP_EXISTS"
    QUESTION_NOT_FOUND = "QUESTION_NOT_FOUND"
    KB_NOT_FOUND = "KB_NOT_FOUND"
    KB_EXISTS = "KB_EXISTS"
    DOC_NOT_FOUND = "DOC_NOT_FOUND"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    UPLOAD_TOO_LARGE = "UPLOAD_TOO_LARGE"
    UPLOAD_EMPTY = "UPLOAD_EMPTY"
    BAD_REQUEST = "BAD_REQUEST"
    LLM_UNAVAILABLE = "LLM_UNAVAILABLE"


_STATUS = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.BAD_CREDENTIALS: 401,
    ErrorCode.TOO_MANY_ATTEMPTS: 429,
    ErrorCode.USER_NOT_FOUND: 404,
    ErrorCode.GROUP_NOT_FOUND: 404,
    ErrorCode.GROUP_EXISTS: 409,
    ErrorCode.QUESTION_NOT_FOUND: 404,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.KB_NOT_FOUND: 404,
    ErrorCode.DOC_NOT_FOUND: 404,
    ErrorCode.JOB_NOT_FOUND: 404,
    ErrorCode.KB_EXISTS: 409,
    ErrorCode.UPLOAD_TOO_LARGE: 413,
    ErrorCode.UPLOAD_EMPTY: 400,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.LLM_UNAVAILABLE: 503,
}


class ZhikuError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _STATUS[self.code]

    def to_json(self) -> dict:
        return {"error": {"code": self.code.value, "message": self.message}}


def install_error_handler(app: FastAPI) -> None:
    @app.exception_handler(ZhikuError)
    async def _handle(_request: Request, exc: ZhikuError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content=exc.to_json())

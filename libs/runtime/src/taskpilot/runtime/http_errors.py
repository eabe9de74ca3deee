"""Refusals every HTTP API answers alike, whatever route raised them."""

from __future__ import annotations

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def add_input_errors(http: FastAPI) -> None:
    """A value PostgreSQL refuses to store (a NUL character in text or JSON, a number out of
    range) is the request's fault: 422, not a 500."""

    async def unstorable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "the request holds a value that cannot be stored (e.g. a NUL character)"},
            status_code=422,
        )

    http.add_exception_handler(psycopg.DataError, unstorable)

"""Request bodies read with a bound: at most ``limit`` bytes (413 beyond, before anything is parsed), then
validated as a pydantic model (422 through the usual validation problem)."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from radtriage.api.problems import ProblemError

M = TypeVar("M", bound=BaseModel)


async def json_body(request: Request, model: type[M], limit: int, what: str) -> M:
    """The body, read up to ``limit`` bytes, as ``model``; ``what`` names it in the 413 problem."""
    raw, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, "Content Too Large", f"{what} is at most {limit} bytes")
        raw.append(chunk)
    try:
        return model.model_validate_json(b"".join(raw))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None

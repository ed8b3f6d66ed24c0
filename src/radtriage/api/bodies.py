"""Request bodies read with a bound: at most ``limit`` bytes (413 beyond, before anything is parsed), then
validated as a pydantic model (422 through the usual validation problem)."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from radtriage.api.problems import ProblemError

M = TypeVar("M", bound=BaseModel)


async def bounded_body(request: Request, limit: int, what: str) -> bytes:
    """The body, read up to ``limit`` bytes; ``what`` names it in the 413 problem."""
    raw, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, "Content Too Large", f"{what} is at most {limit} bytes")
        raw.append(chunk)
    return b"".join(raw)


def validated(model: type[M], data: bytes | dict) -> M:
    """``data`` (JSON bytes, or a dict) as ``model``; 422 with the fields named."""
    try:
        return model.model_validate_json(data) if isinstance(data, bytes) else model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


async def json_body(request: Request, model: type[M], limit: int, what: str) -> M:
    """The body, read up to ``limit`` bytes, as ``model``; ``what`` names it in the 413 problem."""
    return validated(model, await bounded_body(request, limit, what))

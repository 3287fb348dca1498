"""Request and response models. Size limits come from settings, so the models are built per app."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, create_model

from ..settings import Settings


class Turn(BaseModel):
    role: Literal["user", "assistant"]  # never "system": history cannot replace the system prompt
    content: str


class Source(BaseModel):
    document: str | None
    section: str | None
    chunk_id: str | None
    score: float
    text: str | None


class ChatResponse(BaseModel):
    answer: str
    sources: list[Source]
    model: str
    mode: Literal["generated", "extractive"]
    degraded: bool
    timings_ms: dict


class ErrorResponse(BaseModel):
    error: str
    detail: str
    dependency: str | None = None


def chat_request_model(s: Settings) -> type[BaseModel]:
    turn = create_model("HistoryTurn", __base__=Turn,
                        content=(str, Field(max_length=s.max_message_chars)))
    return create_model(
        "ChatRequest",
        question=(str, Field(min_length=1, max_length=s.max_question_chars, pattern=r"\S")),
        history=(list[turn], Field(default_factory=list, max_length=s.max_history_turns)),
        top_k=(int | None, Field(None, ge=1, le=50)),
        stream=(bool, False),
    )

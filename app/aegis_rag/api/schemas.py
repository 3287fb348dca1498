"""Request and response models. Size limits come from settings, so the request model is built per app.

The /chat answer is `service.ChatResult` itself (one definition); the API serialises it without a
second validation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, TypeAdapter, create_model, field_validator
from pydantic_core import PydanticCustomError

from ..service import ChatResult
from ..settings import Settings

ChatResponse = ChatResult
CHAT_RESPONSE = TypeAdapter(ChatResult)


class Turn(BaseModel):
    role: Literal["user", "assistant"]  # never "system": history cannot replace the system prompt
    content: str


class ErrorResponse(BaseModel):
    error: str
    detail: str
    dependency: str | None = None


class FieldError(BaseModel):
    field: str
    message: str


class InvalidInput(BaseModel):
    """422: the request body or parameters do not match the documented model."""

    error: Literal["invalid input"]
    detail: str
    fields: list[FieldError]


class UploadResult(BaseModel):
    id: str
    document: str
    status: Literal["created", "updated", "unchanged"]
    chunks: int | None


class DocumentInfo(BaseModel):
    id: str
    document: str
    content_hash: str
    chunks: int


class DocumentList(BaseModel):
    documents: list[DocumentInfo]
    count: int


class Deleted(BaseModel):
    id: str
    status: Literal["deleted"]


# "Not blank": one character that is not white space. Spelt out because \S differs between the engines
# that read it: ECMA-262 (the published JSON Schema) counts U+FEFF as space and U+0085 not, pydantic's Rust
# regex and Python the other way round. This class (Unicode's White_Space and U+FEFF) means the same in all.
NOT_BLANK = r"[^\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\uFEFF]"


def chat_request_model(s: Settings) -> type[BaseModel]:
    turn = create_model("HistoryTurn", __base__=Turn,
                        content=(str, Field(max_length=s.max_message_chars)))
    # Field definitions built at run time: typed as a plain mapping, which create_model takes as is.
    fields: dict[str, Any] = {
        "question": (str, Field(min_length=1, max_length=s.max_question_chars, pattern=NOT_BLANK)),
        "history": (list[turn], Field(default_factory=list, max_length=s.max_history_turns)),
        # JSON's types, not coerced: top_k a JSON integer (5 or 5.0, never "5" or true), stream a boolean
        "top_k": (int | None, Field(None, ge=1, le=50)),
        "stream": (StrictBool, False),
    }
    return create_model("ChatRequest", __validators__={"top_k_is_a_number": _TOP_K_IS_A_NUMBER}, **fields)


def _number_only(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


_TOP_K_IS_A_NUMBER = field_validator("top_k", mode="before")(_number_only)


def chat_body_limit(s: Settings) -> int:
    """Largest /chat body that can still be valid: every character JSON-escaped (up to 12 bytes, a
    surrogate pair), plus room for the keys and punctuation."""
    chars = s.max_question_chars + s.max_history_turns * s.max_message_chars
    return 12 * chars + 64 * s.max_history_turns + 1024


# --- OpenAPI fragments for what the routes answer beyond their 200
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {400: "the document cannot be read (corrupt, empty, malformed upload)",
                 401: "missing or invalid API key",
                 404: "no such document",
                 413: "request body or upload over the limit",
                 415: "unsupported file type",
                 422: "invalid input",
                 429: "too many uploads being ingested (retry after the Retry-After header)",
                 503: "a dependency is unavailable (retry after the Retry-After header)"}
    return {s: {"model": InvalidInput if s == 422 else ErrorResponse, "description": described[s]}
            for s in statuses}


SSE_DESCRIPTION = (
    "With `stream: true`, Server-Sent Events: `token` events (`{\"text\": ...}`), then one `sources` event "
    "with every field of the JSON answer but `answer`; an LLM failure after the first token ends the stream "
    "with an `error` event (`{\"error\", \"detail\", \"dependency\"}`) instead.")
# The schema of each event of the stream (as OpenAPI 3.2's itemSchema, and as Schemathesis reads `schema`)
SSE_EVENT = {"type": "object", "description": SSE_DESCRIPTION, "required": ["event", "data"],
             "properties": {"event": {"type": "string", "enum": ["token", "sources", "error"]},
                            "data": {"type": "string", "description": "one JSON object, as described above"}}}

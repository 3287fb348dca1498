"""Parse an uploaded file into Markdown text and a title.

Markdown and text pass through (decoded); HTML becomes Markdown (headings, paragraphs, lists, tables,
code blocks); PDF is read page by page with pypdf. Every failure is a ValueError with a message fit
for the client: the API turns it into a 4xx reply.

Parsing has a budget (ParseBudget: pages, characters of text, seconds). A document over it is refused
whole, never truncated.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from collections.abc import Callable
from pathlib import PurePath
from time import monotonic

from ..errors import DocumentTooLarge, UnsupportedDocument
from ..settings import Settings, get_settings

MARKDOWN = {".md", ".markdown"}
TEXT = {".txt", ".text", ".rst", ".log"}
HTML = {".html", ".htm"}
PDF = {".pdf"}
SUPPORTED_SUFFIXES = MARKDOWN | TEXT | HTML | PDF
_BY_TYPE = {"text/markdown": ".md", "text/x-markdown": ".md", "text/plain": ".txt", "text/html": ".html",
            "application/pdf": ".pdf"}


@dataclass
class ParsedDocument:
    markdown: str
    title: str | None


@dataclass(frozen=True)
class ParseBudget:
    """What parsing one document may cost; the defaults admit large manuals."""

    max_pages: int = 2000
    max_text_chars: int = 5_000_000
    max_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ParseBudget:
        return cls(settings.parse_max_pages, settings.parse_max_text_chars, settings.parse_timeout_s)


class OverBudget(DocumentTooLarge):
    """The document is over a parse budget (pages, characters or seconds) -> 413."""


class _Meter:
    """Tracks one parse against its budget; raises OverBudget when it is exceeded."""

    def __init__(self, name: str, budget: ParseBudget, checkpoint: Callable[[], None] | None = None) -> None:
        self.name, self.budget, self.checkpoint = name, budget, checkpoint
        self.deadline = monotonic() + budget.max_seconds

    def check_time(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint()
        if monotonic() > self.deadline:
            raise OverBudget(f"{self.name}: parsing took longer than {self.budget.max_seconds:g} s, over the limit "
                             f"of AEGIS_PARSE_TIMEOUT_S; split the document or raise the limit")

    def check_chars(self, chars: int) -> None:
        if chars > self.budget.max_text_chars:
            raise OverBudget(f"{self.name}: more than {self.budget.max_text_chars:,} characters of text, over the "
                             f"limit of AEGIS_PARSE_MAX_TEXT_CHARS; split the document or raise the limit")

    def check_pages(self, pages: int) -> None:
        if pages > self.budget.max_pages:
            raise OverBudget(f"{self.name}: {pages:,} pages, over the limit of {self.budget.max_pages:,} "
                             f"(AEGIS_PARSE_MAX_PAGES); split the document or raise the limit")


def parse_document(name: str, data: bytes, content_type: str | None = None, *,
                   budget: ParseBudget | None = None, checkpoint: Callable[[], None] | None = None) -> ParsedDocument:
    """Parse one upload. Without a budget, the one of the process settings applies; `checkpoint` is called
    at each budget check (an ingest's abandon check)."""
    meter = _Meter(name, budget or ParseBudget.from_settings(get_settings()), checkpoint)
    suffix = PurePath(name).suffix.lower()
    if not suffix:  # the name decides; the content type helps only when the name has no suffix
        suffix = _BY_TYPE.get((content_type or "").split(";")[0].strip().lower(), "")
    if suffix in PDF:
        return _parse_pdf(name, data, meter)
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedDocument(f"{name}: unsupported file type '{suffix or content_type}'; "
                         f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}")
    text = _decode(name, data)
    if suffix in HTML:
        return _html_to_markdown(text, meter)
    meter.check_chars(len(text))
    return ParsedDocument(text, _first_heading(text) if suffix in MARKDOWN else None)


def _decode(name: str, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise ValueError(f"{name}: binary content, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _first_heading(markdown: str) -> str | None:
    m = re.search(r"^#\s+(.+?)\s*#*\s*$", markdown, re.M)
    return m.group(1) if m else None


def _parse_pdf(name: str, data: bytes, meter: _Meter) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        meter.check_pages(_declared_pages(reader))  # cheap, before walking the page tree
        meter.check_pages(len(reader.pages))  # the real count: the declared one may lie
        pages, chars = [], 0
        for page in reader.pages:
            meter.check_time()
            text = (page.extract_text() or "").strip()
            chars += len(text) + 2
            meter.check_chars(chars)
            pages.append(text)
        meter.check_time()
        title = (reader.metadata.title if reader.metadata else None) or None
    except OverBudget:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ValueError(f"{name}: not a readable PDF ({type(exc).__name__}: {str(exc)[:120]})") from None
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise ValueError(f"{name}: the PDF has no text layer (a scan?); nothing to index")
    return ParsedDocument(text, str(title).strip() if title else None)


def _declared_pages(reader) -> int:
    """The page count the file declares (/Root /Pages /Count); 0 when it declares none."""
    try:
        count = reader.root_object["/Pages"].get_object().get("/Count", 0)
        return int(count) if isinstance(count, int) else 0
    except (KeyError, TypeError, AttributeError):
        return 0


class _HtmlToMarkdown(HTMLParser):
    """A small converter for documentation pages: enough structure for chunking and citing."""

    SKIP = {"script", "style", "nav", "footer", "head", "noscript", "svg"}
    BLOCKS = {"p", "div", "section", "article", "main", "header", "blockquote", "br", "hr", "ul", "ol", "dl"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title: str | None = None
        self._skip = 0
        self._in_title = False
        self._pre = False
        self._row: list[str] | None = None
        self._rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._heading: int | None = None
        self.size = 0  # characters of text so far, to stop a runaway document early

    def _emit(self, text: str) -> None:
        self.out.append(text)
        self.size += len(text)

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = int(tag[1])
            self._emit("\n\n" + "#" * self._heading + " ")
        elif tag == "pre":
            self._pre = True
            self._emit("\n\n```\n")
        elif tag == "li":
            self._emit("\n- ")
        elif tag == "table":
            self._rows = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in self.BLOCKS:
            self._emit("\n\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = None
            self._emit("\n\n")
        elif tag == "pre":
            self._pre = False
            self._emit("\n```\n\n")
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()).replace("|", "\\|"))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._rows.append(self._row)
            self._row = None
        elif tag == "table":
            self.out.append(self._table())  # cells were counted as they arrived
        elif tag in self.BLOCKS:
            self._emit("\n\n")

    def handle_data(self, data):
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        elif self._skip:
            return
        elif self._cell is not None:
            self._cell.append(data)
            self.size += len(data)
        elif self._pre:
            self._emit(data)
        else:  # inline text: collapse white space, keep word boundaries between inline tags
            text = re.sub(r"\s+", " ", data)
            prev = self.out[-1] if self.out else "\n"
            if prev[-1:].isspace():
                text = text.lstrip()
            if text:
                self._emit(text)

    def _table(self) -> str:
        rows = [r for r in self._rows if r]
        self._rows = []
        if not rows:
            return ""
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n\n" + "\n".join(lines) + "\n\n"


_HTML_SLICE = 1 << 16  # HTML is fed in slices so the budget is checked while it is parsed


def html_to_markdown(html: str) -> ParsedDocument:
    return _html_to_markdown(html, None)


def _html_to_markdown(html: str, meter: _Meter | None) -> ParsedDocument:
    parser = _HtmlToMarkdown()
    for start in range(0, len(html), _HTML_SLICE):
        parser.feed(html[start:start + _HTML_SLICE])
        if meter:
            meter.check_time()
            meter.check_chars(parser.size)
    parser.close()
    text = re.sub(r"[ \t]+\n", "\n", "".join(parser.out))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if meter:
        meter.check_chars(len(text))
    return ParsedDocument(text, parser.title or _first_heading(text))

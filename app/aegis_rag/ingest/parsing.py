"""Parse an uploaded file into Markdown text and a title.

Markdown and text pass through (decoded); HTML becomes Markdown (headings, paragraphs, lists, tables,
code blocks); PDF is read page by page with pypdf. Every failure is a ValueError with a message fit
for the client: the API turns it into a 4xx reply.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath

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


def parse_document(name: str, data: bytes, content_type: str | None = None) -> ParsedDocument:
    suffix = PurePath(name).suffix.lower()
    if not suffix:  # the name decides; the content type helps only when the name has no suffix
        suffix = _BY_TYPE.get((content_type or "").split(";")[0].strip().lower(), "")
    if suffix in PDF:
        return _parse_pdf(name, data)
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"{name}: unsupported file type '{suffix or content_type}'; "
                         f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}")
    text = _decode(name, data)
    if suffix in HTML:
        return html_to_markdown(text)
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


def _parse_pdf(name: str, data: bytes) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or None
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ValueError(f"{name}: not a readable PDF ({type(exc).__name__}: {str(exc)[:120]})") from None
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise ValueError(f"{name}: the PDF has no text layer (a scan?); nothing to index")
    return ParsedDocument(text, str(title).strip() if title else None)


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

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = int(tag[1])
            self.out.append("\n\n" + "#" * self._heading + " ")
        elif tag == "pre":
            self._pre = True
            self.out.append("\n\n```\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag == "table":
            self._rows = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in self.BLOCKS:
            self.out.append("\n\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = None
            self.out.append("\n\n")
        elif tag == "pre":
            self._pre = False
            self.out.append("\n```\n\n")
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()).replace("|", "\\|"))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._rows.append(self._row)
            self._row = None
        elif tag == "table":
            self.out.append(self._table())
        elif tag in self.BLOCKS:
            self.out.append("\n\n")

    def handle_data(self, data):
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        elif self._skip:
            return
        elif self._cell is not None:
            self._cell.append(data)
        elif self._pre:
            self.out.append(data)
        else:  # inline text: collapse white space, keep word boundaries between inline tags
            text = re.sub(r"\s+", " ", data)
            prev = self.out[-1] if self.out else "\n"
            if prev[-1:].isspace():
                text = text.lstrip()
            if text:
                self.out.append(text)

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


def html_to_markdown(html: str) -> ParsedDocument:
    parser = _HtmlToMarkdown()
    parser.feed(html)
    parser.close()
    text = re.sub(r"[ \t]+\n", "\n", "".join(parser.out))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return ParsedDocument(text, parser.title or _first_heading(text))

"""Markdown-aware chunking.

The document is split into top-level blocks (markdown-it's block parser gives each block's source
lines). Headings build the section path ("Guide > Install > Debian"); other blocks are packed into
chunks of at most `max_chars` within one section. No chunk is longer than `max_chars`: a table
larger than that is split by rows, each part repeating the header row and separator; a fenced code
block is split by lines, each part keeping its opening fence (with the language) and closing fence;
long paragraphs and lists are split at line, then sentence boundaries. A single line that is still
too long is cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark").enable("table").disable("inline")  # block structure is all chunking needs
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_FENCE = re.compile(r"(\s*)(`{3,}|~{3,})")


@dataclass
class Chunk:
    index: int
    section: str | None
    text: str


@dataclass
class _Block:
    section: str | None
    text: str
    kind: str  # markdown-it token type: "table_open", "fence", "code_block", "paragraph_open", ...


def _blocks(markdown: str, title: str | None) -> list[_Block]:
    lines = markdown.split("\n")
    tokens = _MD.parse(markdown)
    path: list[tuple[int, str]] = []
    blocks: list[_Block] = []
    for i, tok in enumerate(tokens):
        if tok.level != 0 or tok.map is None or tok.nesting == -1:
            continue
        if tok.type == "heading_open":
            depth = int(tok.tag[1])
            path = [(d, t) for d, t in path if d < depth] + [(depth, tokens[i + 1].content.strip())]
            continue
        text = "\n".join(lines[tok.map[0]:tok.map[1]]).strip("\n")
        if tok.type == "html_block" and not re.sub(r"<!--.*?-->", "", text, flags=re.S).strip():
            continue  # comments only
        if text.strip():
            section = " > ".join(t for _, t in path if t) or title
            blocks.append(_Block(section, text, tok.type))
    return blocks


def _split(text: str, max_chars: int) -> list[str]:
    """Split at line ends, then sentence ends, into pieces of at most max_chars (hard cut as a last resort)."""
    units: list[tuple[str, str]] = []  # (text, separator before it)
    for line in text.split("\n"):
        if len(line) <= max_chars:
            units.append((line, "\n"))
            continue
        for sentence in _SENTENCE_END.split(line):
            units += [(sentence[i:i + max_chars], " ") for i in range(0, len(sentence), max_chars)]
    pieces, current = [], ""
    for unit, sep in units:
        if not unit.strip():
            continue
        if current and len(current) + len(sep) + len(unit) > max_chars:
            pieces.append(current)
            current = ""
        current = f"{current}{sep}{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def _cut(line: str, size: int) -> list[str]:
    return [line[i:i + size] for i in range(0, len(line), size)] or [""]


def _pack_lines(lines: list[str], max_chars: int) -> list[str]:
    """Join lines (blank ones kept) into pieces of at most max_chars; longer lines are cut."""
    pieces: list[str] = []
    current: list[str] = []
    size = -1  # length of "\n".join(current)
    for line in lines:
        for part in _cut(line, max_chars):
            if current and size + 1 + len(part) > max_chars:
                pieces.append("\n".join(current))
                current, size = [], -1
            current.append(part)
            size += 1 + len(part)
    if current:
        pieces.append("\n".join(current))
    return pieces


def _split_framed(head: list[str], body: list[str], tail: list[str], max_chars: int) -> list[str]:
    """Split body lines into parts of at most max_chars, each framed by the head and tail lines."""
    frame = sum(len(line) + 1 for line in head + tail)  # frame lines and their line breaks
    room = max_chars - frame
    if room < max(1, max_chars // 4):  # the frame would crowd out the content: split plainly
        return _pack_lines(head + body + tail, max_chars)
    return ["\n".join(head + [piece] + tail) for piece in _pack_lines(body, room)]


def _split_table(text: str, max_chars: int) -> list[str]:
    lines = text.split("\n")
    return _split_framed(lines[:2], lines[2:], [], max_chars)


def _split_fence(text: str, max_chars: int) -> list[str]:
    lines = text.split("\n")
    opening = lines[0]
    fence = _FENCE.match(opening)
    marker = fence.group(2) if fence else "```"
    last = lines[-1].strip()
    closed = len(lines) > 1 and last.startswith(marker) and not last.strip(marker[0])
    body = lines[1:-1] if closed else lines[1:]
    closing = lines[-1] if closed else (fence.group(1) if fence else "") + marker  # an unclosed fence gets one
    return _split_framed([opening], body, [closing], max_chars)


def _split_block(block: _Block, max_chars: int) -> list[str]:
    if block.kind == "table_open":
        return _split_table(block.text, max_chars)
    if block.kind == "fence":
        return _split_fence(block.text, max_chars)
    if block.kind == "code_block":
        return _pack_lines(block.text.split("\n"), max_chars)
    return _split(block.text, max_chars)


def chunk_markdown(markdown: str, title: str | None = None, max_chars: int = 1200) -> list[Chunk]:
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    chunks: list[Chunk] = []
    section: str | None = None
    buf: list[str] = []

    def flush():
        if buf:
            chunks.append(Chunk(len(chunks), section, "\n\n".join(buf)))
            buf.clear()

    for block in _blocks(markdown, title):
        if block.section != section:
            flush()
            section = block.section
        size = sum(len(b) + 2 for b in buf)
        if len(block.text) > max_chars:
            flush()
            for piece in _split_block(block, max_chars):
                chunks.append(Chunk(len(chunks), section, piece))
            continue
        if buf and size + len(block.text) > max_chars:
            flush()
        buf.append(block.text)
    flush()
    return chunks

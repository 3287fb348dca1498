"""Markdown-aware chunking.

The document is split into top-level blocks (markdown-it's block parser gives each block's source
lines). Headings build the section path ("Guide > Install > Debian"); other blocks are packed into
chunks of at most `max_chars` within one section. Tables and fenced code blocks are never cut: one
that is larger than `max_chars` becomes a chunk of its own. Long paragraphs and lists are split at
sentence or line boundaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark").enable("table")
_WHOLE = {"table_open", "fence", "code_block"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Chunk:
    index: int
    section: str | None
    text: str


@dataclass
class _Block:
    section: str | None
    text: str
    whole: bool  # never split


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
            blocks.append(_Block(section, text, tok.type in _WHOLE))
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


def chunk_markdown(markdown: str, title: str | None = None, max_chars: int = 1200) -> list[Chunk]:
    chunks: list[Chunk] = []
    section, buf = None, []

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
            for piece in [block.text] if block.whole else _split(block.text, max_chars):
                chunks.append(Chunk(len(chunks), section, piece))
            continue
        if buf and size + len(block.text) > max_chars:
            flush()
        buf.append(block.text)
    flush()
    return chunks

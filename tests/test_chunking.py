from aegis_rag.ingest.chunking import chunk_markdown
from aegis_rag.ingest.parsing import SUPPORTED_SUFFIXES, html_to_markdown, parse_document

import pytest

DOC = """# Guide

Intro paragraph.

## Install

### Debian

Run the setup script.

| step | command |
|------|---------|
| 1 | make demo |

```bash
make demo
make test
```

## Operate

Watch the metrics.
"""


def test_sections_follow_the_heading_path():
    chunks = chunk_markdown(DOC, max_chars=1200)
    assert [(c.index, c.section) for c in chunks] == [
        (0, "Guide"), (1, "Guide > Install > Debian"), (2, "Guide > Operate")]
    assert chunks[0].text == "Intro paragraph."
    assert "| 1 | make demo |" in chunks[1].text and "```bash\nmake demo\nmake test\n```" in chunks[1].text


def test_tables_and_code_blocks_within_the_limit_stay_whole():
    table = "| a | b |\n|---|---|\n" + "\n".join(f"| row {i} | value {i} |" for i in range(5))
    code = "```\n" + "\n".join(f"line {i}" for i in range(5)) + "\n```"
    chunks = chunk_markdown(f"# T\n\nBefore.\n\n{table}\n\n{code}\n\nAfter.", max_chars=200)
    texts = [c.text for c in chunks]
    assert table in texts[0] or table in texts[1]
    assert any(code in t for t in texts)
    assert texts[0].startswith("Before.") and texts[-1].endswith("After.")


def test_a_large_table_is_split_by_rows_each_part_with_the_header():
    header = "| host | role |\n|------|------|"
    rows = [f"| host-{i} | role {i} |" for i in range(100)]
    table = header + "\n" + "\n".join(rows)
    chunks = chunk_markdown(f"# T\n\nBefore.\n\n{table}\n\nAfter.", max_chars=200)
    texts = [c.text for c in chunks]
    parts = texts[1:-1]
    assert texts[0] == "Before." and texts[-1] == "After."
    assert len(parts) > 5 and all(len(t) <= 200 for t in texts)
    assert all(t.startswith(header + "\n") for t in parts)
    assert [r for t in parts for r in t.split("\n")[2:]] == rows  # every row once, in order
    assert {c.section for c in chunks} == {"T"}


def test_a_large_code_block_is_split_by_lines_keeping_the_fence_and_language():
    body = [f"    step_{i}()" if i % 7 else "" for i in range(300)]
    code = "```python\n" + "\n".join(body) + "\n```"
    parts = [c.text for c in chunk_markdown(code, max_chars=250)]
    assert len(parts) > 5 and all(len(t) <= 250 for t in parts)
    assert all(t.startswith("```python\n") and t.endswith("\n```") for t in parts)
    assert [line for t in parts for line in t.split("\n")[1:-1]] == body  # blank lines kept


@pytest.mark.parametrize("fence", ["~~~", "````"])
def test_other_fences_and_unclosed_fences_are_repeated(fence):
    code = f"{fence}sh\n" + "\n".join(f"echo {i}" for i in range(100)) + f"\n{fence}"
    parts = [c.text for c in chunk_markdown(code, max_chars=120)]
    assert all(t.startswith(f"{fence}sh\n") and t.endswith(f"\n{fence}") and len(t) <= 120 for t in parts)
    unclosed = [c.text for c in chunk_markdown(code[: -len(fence)].rstrip(), max_chars=120)]
    assert all(t.startswith(f"{fence}sh\n") and t.endswith(f"\n{fence}") and len(t) <= 120 for t in unclosed)
    assert unclosed == parts


def test_an_over_long_line_is_cut_everywhere():
    word = "x" * 5000
    doc = f"# T\n\n{word}\n\n| h |\n|---|\n| {word} |\n\n```\n{word}\n```"
    chunks = chunk_markdown(doc, max_chars=300)
    assert all(len(c.text) <= 300 for c in chunks)
    assert sum(c.text.count("x") for c in chunks) == 3 * 5000
    table_parts = [c.text for c in chunks if c.text.startswith("| h |\n|---|\n")]
    code_parts = [c.text for c in chunks if c.text.startswith("```\n")]
    assert len(table_parts) >= 17 and len(code_parts) >= 17


@pytest.mark.slow
def test_a_15_mb_html_table_becomes_bounded_chunks_with_the_header():
    row = "<tr><td>srv-{i:06d}</td><td>eu-west-{r}</td><td>ok</td><td>" + "detail " * 85 + "</td></tr>\n"
    rows = [row.format(i=i, r=i % 3) for i in range(25_000)]
    html = "<h1>Inventory</h1><table><tr><th>host</th><th>zone</th><th>state</th><th>notes</th></tr>\n" \
        + "".join(rows) + "</table>"
    assert len(html) > 15_000_000
    chunks = chunk_markdown(html_to_markdown(html).markdown, max_chars=1200)
    header = "| host | zone | state | notes |\n|---|---|---|---|\n"
    assert len(chunks) >= 12_500
    assert all(len(c.text) <= 1200 and c.text.startswith(header) for c in chunks)
    assert [c.section for c in chunks[:1] + chunks[-1:]] == ["Inventory", "Inventory"]
    assert sum(c.text.count("| srv-") for c in chunks) == 25_000


def test_max_chars_must_be_positive():
    with pytest.raises(ValueError, match="max_chars"):
        chunk_markdown("text", max_chars=0)


def test_long_paragraphs_split_at_sentences_within_the_limit():
    para = " ".join(f"Sentence number {i} is here." for i in range(100))
    chunks = chunk_markdown(f"# Long\n\n{para}", max_chars=300)
    assert len(chunks) > 5
    assert all(len(c.text) <= 300 for c in chunks)
    assert " ".join(c.text for c in chunks) == para
    assert all(c.text.endswith(".") for c in chunks)


def test_text_without_headings_uses_the_title():
    chunks = chunk_markdown("Just text.", title="notes")
    assert [(c.section, c.text) for c in chunks] == [("notes", "Just text.")]
    assert chunk_markdown("   \n\n") == []


def test_html_becomes_markdown_with_structure():
    parsed = html_to_markdown("""<html><head><title>Runbook</title><style>p {}</style></head><body>
        <nav>menu</nav><h1>Runbook</h1><p>Check   the <b>API</b>.</p>
        <h2>Steps</h2><ul><li>one</li><li>two</li></ul>
        <table><tr><th>host</th><th>role</th></tr><tr><td>a</td><td>api</td></tr></table>
        <pre>systemctl restart aegis-api</pre><script>alert(1)</script></body></html>""")
    assert parsed.title == "Runbook"
    md = parsed.markdown
    assert "# Runbook" in md and "## Steps" in md and "Check the API." in md
    assert "- one\n- two" in md
    assert "| host | role |\n|---|---|\n| a | api |" in md
    assert "```\nsystemctl restart aegis-api\n```" in md
    assert "menu" not in md and "alert" not in md and "p {}" not in md


def test_parse_document_by_suffix_and_content_type():
    assert parse_document("a.md", b"# Title\n\ntext").title == "Title"
    assert parse_document("a.txt", b"\xef\xbb\xbfplain\r\nline").markdown == "plain\nline"
    assert parse_document("upload", b"<h1>X</h1>", "text/html").markdown == "# X"
    assert parse_document("latin.txt", "caf\xe9".encode("cp1252")).markdown == "café"


@pytest.mark.parametrize("name,data,message", [
    ("image.png", b"\x89PNG", "unsupported file type '.png'"),
    ("binary.txt", b"abc\x00def", "binary content"),
    ("broken.pdf", b"%PDF-1.4 not really", "not a readable PDF"),
])
def test_unusable_files_are_refused_with_a_reason(name, data, message):
    with pytest.raises(ValueError, match=message):
        parse_document(name, data)
    assert ".md" in ", ".join(sorted(SUPPORTED_SUFFIXES))


def test_pdf_text_is_extracted(tmp_path):
    pdf = _tiny_pdf("Snapshots are verified with sha256.")
    parsed = parse_document("doc.pdf", pdf)
    assert "Snapshots are verified with sha256." in parsed.markdown


def _tiny_pdf(text: str) -> bytes:
    """A one-page PDF with a text layer, written by hand (no PDF writer library needed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out

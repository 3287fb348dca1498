"""Parse budgets: a document over its page, text or time budget is refused whole, with the reason."""

import io
import itertools

import pytest
from pypdf import PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject

from aegis_rag.ingest import parsing
from aegis_rag.ingest.parsing import OverBudget, ParseBudget, parse_document
from aegis_rag.settings import get_settings


def shared_stream_pdf(pages: int, text: str, declared: int | None = None) -> bytes:
    """A PDF whose pages all draw the same content stream (one object, referenced by every page)."""
    writer = PdfWriter()
    content = DecodedStreamObject()
    content.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
    content_ref = writer._add_object(content)
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    resources = writer._add_object(DictionaryObject({NameObject("/Font"): DictionaryObject(
        {NameObject("/F1"): writer._add_object(font)})}))
    pages_ref = writer._pages  # the writer's /Pages node
    kids = ArrayObject()
    for _ in range(pages):
        page = DictionaryObject({
            NameObject("/Type"): NameObject("/Page"), NameObject("/Parent"): pages_ref,
            NameObject("/MediaBox"): ArrayObject([NumberObject(0), NumberObject(0), NumberObject(612),
                                                  NumberObject(792)]),
            NameObject("/Contents"): content_ref, NameObject("/Resources"): resources})
        kids.append(writer._add_object(page))
    node = pages_ref.get_object()
    node[NameObject("/Kids")] = kids
    node[NameObject("/Count")] = NumberObject(pages if declared is None else declared)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_20000_page_pdf_sharing_one_content_stream_is_refused_by_its_page_count():
    pdf = shared_stream_pdf(20_000, "The same page again. " * 40)
    with pytest.raises(OverBudget, match=r"big\.pdf: 20,000 pages, over the limit of 2,000 \(AEGIS_PARSE_MAX_PAGES\)"):
        parse_document("big.pdf", pdf, budget=ParseBudget())


def test_a_pdf_understating_its_page_count_is_still_counted():
    pdf = shared_stream_pdf(5, "Page.", declared=1)
    with pytest.raises(OverBudget, match="5 pages, over the limit of 3"):
        parse_document("liar.pdf", pdf, budget=ParseBudget(max_pages=3))


def test_pdf_text_over_the_budget_is_refused_while_reading_pages():
    pdf = shared_stream_pdf(300, "Dense text on every page. " * 40)  # about 1,000 characters a page
    with pytest.raises(OverBudget, match=r"more than 50,000 characters of text, over the limit of "
                                         r"AEGIS_PARSE_MAX_TEXT_CHARS"):
        parse_document("dense.pdf", pdf, budget=ParseBudget(max_text_chars=50_000))
    assert "Dense text" in parse_document("dense.pdf", pdf, budget=ParseBudget(max_text_chars=400_000)).markdown


def test_parsing_that_outlasts_its_time_budget_is_refused(monkeypatch):
    clock = itertools.count(start=1000.0, step=1.0)  # every reading of the clock is one second later
    monkeypatch.setattr(parsing, "monotonic", lambda: next(clock))
    pdf = shared_stream_pdf(50, "Slow page.")
    with pytest.raises(OverBudget, match=r"slow\.pdf: parsing took longer than 10 s, over the limit of "
                                         r"AEGIS_PARSE_TIMEOUT_S"):
        parse_document("slow.pdf", pdf, budget=ParseBudget(max_seconds=10))
    html = "<p>" + "A paragraph of a long page. " * 100_000 + "</p>"
    with pytest.raises(OverBudget, match="parsing took longer than 10 s"):
        parse_document("slow.html", html.encode(), budget=ParseBudget(max_seconds=10))


@pytest.mark.parametrize("name,data", [
    ("long.md", b"# Long\n\n" + b"word " * 1_000_001),
    ("long.txt", b"word " * 1_000_001),
    ("long.html", b"<p>" + b"word " * 1_000_001 + b"</p>"),
])
def test_over_long_text_is_refused_not_truncated(name, data):
    with pytest.raises(OverBudget, match=rf"{name}: more than 5,000,000 characters of text, over the limit"):
        parse_document(name, data, budget=ParseBudget())
    assert issubclass(OverBudget, ValueError)  # the service turns it into BadDocument: HTTP 413


def test_documents_within_the_budget_parse_as_before():
    budget = ParseBudget(max_pages=3, max_text_chars=100, max_seconds=5)
    assert parse_document("a.md", b"# Title\n\ntext", budget=budget).title == "Title"
    assert parse_document("a.pdf", shared_stream_pdf(3, "Three pages."), budget=budget).markdown.count("Three") == 3


def test_without_a_budget_the_settings_apply(monkeypatch):
    monkeypatch.setenv("AEGIS_PARSE_MAX_PAGES", "2")
    monkeypatch.setenv("AEGIS_PARSE_MAX_TEXT_CHARS", "1000")
    get_settings.cache_clear()
    try:
        with pytest.raises(OverBudget, match="3 pages, over the limit of 2"):
            parse_document("three.pdf", shared_stream_pdf(3, "Page."))
        with pytest.raises(OverBudget, match="more than 1,000 characters"):
            parse_document("long.txt", b"x" * 1001)
        assert ParseBudget.from_settings(get_settings()) == ParseBudget(2, 1000, 60.0)
    finally:
        get_settings.cache_clear()

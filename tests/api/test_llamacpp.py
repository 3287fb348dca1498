"""End to end with a real local LLM: SmolLM2-135M through llama.cpp (the `llamacpp` extra, which
`make test` installs). Temperature 0 makes the model's output repeatable."""

import pytest

pytestmark = pytest.mark.llamacpp

FACT = {"archive.md": "# Archive\n\nThe backup archive bucket is named zebrafish-vault-7.\n"}
QUESTION = {"question": "What is the backup archive bucket named?", "history": []}


@pytest.fixture(scope="module")
def generator():
    from aegis_rag.generation import LlamaCppGenerator
    from aegis_rag.settings import Settings

    return LlamaCppGenerator(Settings(llm="llamacpp", llm_temperature=0.0, llm_max_tokens=48))


def test_answer_is_generated_from_the_retrieved_context(make_client, generator):
    client = make_client(corpus=FACT, llm="llamacpp", service_kwargs={"generator": generator})
    body = client.post("/chat", json=QUESTION).json()
    assert body["mode"] == "generated" and body["degraded"] is False
    assert body["model"].lower().startswith("smollm2")
    assert body["sources"][0]["document"] == "archive.md"
    assert "zebrafish" in body["answer"].lower()  # only the retrieved context carries this name


def test_without_context_the_model_does_not_know(make_client, generator):
    client = make_client(corpus=None, llm="llamacpp", service_kwargs={"generator": generator})
    body = client.post("/chat", json=QUESTION).json()
    assert body["mode"] == "generated" and body["sources"] == []
    assert "zebrafish" not in body["answer"].lower()


def test_streaming_yields_model_tokens(make_client, generator):
    client = make_client(corpus=FACT, llm="llamacpp", service_kwargs={"generator": generator})
    with client.stream("POST", "/chat", json={**QUESTION, "stream": True}) as r:
        raw = r.read().decode()
    events = [b.split("\n")[0].removeprefix("event: ") for b in raw.strip().split("\n\n")]
    assert events.count("token") > 1 and events[-1] == "sources"

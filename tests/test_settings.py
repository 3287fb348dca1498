"""The README's settings table and the Settings model must list the same names and defaults."""

import re
from pathlib import Path

import pytest

from aegis_rag.settings import Settings

ROW = re.compile(r"^\| `AEGIS_([A-Z0-9_]+)` \| (.+?) \| .+ \|$")


def readme_rows() -> dict[str, str]:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    return {m.group(1).lower(): m.group(2) for line in text.splitlines() if (m := ROW.match(line))}


def shown(default) -> str:
    if default is None or default == []:
        return "(unset)"
    return f"`{default}`"


def test_readme_lists_every_setting_with_its_default():
    rows = readme_rows()
    fields = Settings.model_fields
    assert set(rows) == set(fields)
    for name, field in fields.items():
        assert rows[name] == shown(field.get_default(call_default_factory=True)), name


def test_env_and_yaml_sources(tmp_path, monkeypatch):
    cfg = tmp_path / "aegis.yml"
    cfg.write_text("port: 9000\ntop_k: 7\nllm: ollama\n")
    monkeypatch.setenv("AEGIS_CONFIG", str(cfg))
    monkeypatch.setenv("AEGIS_TOP_K", "3")
    monkeypatch.setenv("AEGIS_API_KEYS", "k1, k2")
    s = Settings()
    assert (s.port, s.top_k, s.llm) == (9000, 3, "ollama")  # env beats the file
    assert [k.get_secret_value() for k in s.api_keys] == ["k1", "k2"]
    assert "k1" not in repr(s)


def test_invalid_values_are_refused(monkeypatch):
    monkeypatch.setenv("AEGIS_LLM", "gpt-9")
    with pytest.raises(ValueError, match="llm"):
        Settings()


def test_local_model_dir_selects_the_exported_model(monkeypatch, tmp_path):
    import aegis_rag.embeddings as embeddings

    chosen = {}
    monkeypatch.setattr(embeddings.LocalEmbedder, "exported", classmethod(lambda cls, folder: chosen.setdefault(
        "folder", folder)))
    monkeypatch.setenv("AEGIS_LOCAL_MODEL_DIR", str(tmp_path))
    s = Settings()
    assert s.local_model_dir == tmp_path
    assert embeddings.build_embedder(s) == tmp_path
    assert chosen == {"folder": tmp_path}

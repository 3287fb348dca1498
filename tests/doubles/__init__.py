"""HTTP doubles of Qdrant (qdrant.py), Ollama (ollama.py) and Jina AI (jina.py), with fault injection
(faults.py). Each module docstring lists how its double diverges from the real service."""

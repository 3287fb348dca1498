"""Turning uploaded files into chunks: parsing (Markdown, text, HTML, PDF) and Markdown-aware chunking."""

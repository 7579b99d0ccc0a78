"""Markdown to one self-contained HTML page (the report's HTML form, which embeds its figures)."""

from __future__ import annotations

import base64
import re
from pathlib import Path


def markdown_to_html(text: str, base: Path, title: str) -> str:
    """A self-contained HTML page: the Markdown converted, every local PNG embedded as a data URI."""
    import markdown

    body = markdown.markdown(text, extensions=["tables"])

    def embed(match: re.Match) -> str:
        path = base / match.group(1)
        if not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    style = ("body{font-family:sans-serif;max-width:70em;margin:auto;padding:1em}table{border-collapse:collapse;"
             "font-size:85%}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style>"
            f"</head><body>\n{body}\n</body></html>\n")

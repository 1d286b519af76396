"""A self-contained HTML page from the audit's Markdown (plots embedded as data URIs).

Only what the audit report writes is understood: headings, pipe tables,
bullet lists, images, paragraphs, ``code`` and **bold**. Text is HTML-escaped,
so nothing in a ledger (a device id, a note) can inject markup.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;"
    "padding:3px 7px;font-size:13px}th{background:#f3f3f3}code{font-size:12px}"
    "li.fail{color:#b00020}img{max-width:520px}"
)


def _inline(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _image(alt: str, name: str, folder: Path) -> str:
    path = folder / name
    if not path.is_file():
        return f"<p>[missing plot {html.escape(name)}]</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def markdown_page(lines: Sequence[str], folder: Path, title: str) -> str:
    body: list[str] = []
    table: list[list[str]] = []
    items: list[str] = []

    def flush() -> None:
        if table:
            head, *rows = table
            body.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
            for row in rows:
                body.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
            body.append("</table>")
            table.clear()
        if items:
            body.append("<ul>" + "".join(items) + "</ul>")
            items.clear()

    for line in lines:
        image = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip())
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r"-+", c) for c in cells):
                table.append(cells)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            css = ' class="fail"' if "FAILED" in line or "Failures" in line else ""
            items.append(f"<li{css}>{_inline(line[2:])}</li>")
        elif image:
            body.append(_image(image.group(1), image.group(2), folder))
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    flush()
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )

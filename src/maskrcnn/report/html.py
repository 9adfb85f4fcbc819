"""Plain HTML for the report: one stylesheet inline in every page, no script, no external URL.

Pages open from disk (file://) with nothing fetched from anywhere: every link and image
is a relative path to a file beside the page. Text from the data (class names, file
names) is escaped here, once; `Html` marks strings that are already markup.
"""

from __future__ import annotations

import html as html_lib
import math
from collections.abc import Sequence
from pathlib import Path

from maskrcnn.io_utils import atomic_write_text

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1240px; padding: 0 20px 40px; color: #1d1d1f; background: #fafafa; }
header { border-bottom: 1px solid #ddd; margin-bottom: 12px; }
h1 { font-size: 1.5em; margin: 18px 0 4px; } h2 { font-size: 1.2em; margin: 26px 0 8px; }
h3 { font-size: 1.0em; margin: 16px 0 6px; }
p.note, .note { color: #555; font-size: 0.88em; max-width: 980px; }
nav a { margin-right: 14px; font-size: 0.92em; }
table { border-collapse: collapse; margin: 6px 0 10px; background: #fff; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 9px; text-align: right; }
th { background: #f0f0f3; } td.name, th.name { text-align: left; }
tr.best td { background: #e8f6ea; font-weight: 600; }
.flex { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid #ddd; padding: 6px; font-size: 0.82em; }
.card img { width: 100%; height: auto; display: block; }
.card a { text-decoration: none; color: inherit; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: -0.1em; margin: 0 3px 0 8px; }
.pager a, .pager span { margin-right: 8px; }
img.chart { max-width: 100%; background: #fff; border: 1px solid #ddd; }
img.full { max-width: 100%; height: auto; border: 1px solid #ddd; }
"""


class Html(str):
    """A string that is already HTML (not escaped again)."""


def esc(value: object) -> Html:
    return value if isinstance(value, Html) else Html(html_lib.escape(str(value), quote=True))


def number(value: float | int | None, digits: int = 3) -> str:
    """A table cell for a number: '-' for None, NaN or COCO's -1 (no object of that kind)."""
    if value is None or (isinstance(value, float) and (math.isnan(value) or value < 0)):
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def link(href: str, text: object) -> Html:
    return Html(f'<a href="{esc(href)}">{esc(text)}</a>')


def image(src: str, alt: str, *, css_class: str = "", lazy: bool = True, width: int | None = None,
          height: int | None = None) -> Html:
    attrs = [f'src="{esc(src)}"', f'alt="{esc(alt)}"']
    if css_class:
        attrs.append(f'class="{esc(css_class)}"')
    if width and height:
        attrs.append(f'width="{width}" height="{height}"')  # reserves the space before loading
    if lazy:
        attrs.append('loading="lazy" decoding="async"')
    return Html(f"<img {' '.join(attrs)}>")


def table(headers: Sequence[object], rows: Sequence[Sequence[object]], *, name_columns: int = 1,
          row_classes: Sequence[str] | None = None) -> Html:
    """A table; the first `name_columns` columns are left-aligned text, the rest numbers."""
    def cells(values: Sequence[object], tag: str) -> str:
        return "".join(
            f'<{tag} class="name">{esc(v)}</{tag}>' if i < name_columns else f"<{tag}>{esc(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    lines = [f"<table><thead><tr>{cells(headers, 'th')}</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        css = row_classes[i] if row_classes is not None and row_classes[i] else ""
        lines.append(f'<tr class="{esc(css)}">{cells(row, "td")}</tr>' if css else f"<tr>{cells(row, 'td')}</tr>")
    lines.append("</tbody></table>")
    return Html("\n".join(lines))


def page(title: str, body: Sequence[str], *, nav: Sequence[tuple[str, str]] = ()) -> str:
    links = " ".join(link(href, text) for href, text in nav)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head><body>",
            f"<header><h1>{esc(title)}</h1><nav>{links}</nav></header>",
            *body,
            "</body></html>",
            "",
        ]
    )


def write_page(path: Path, text: str) -> None:
    atomic_write_text(path, text)

"""A report as a list of blocks (headings, paragraphs, tables, images), rendered to HTML or Markdown.

The HTML is self-contained: inline CSS and images embedded as base64 ``data:`` URIs, so the file
can be mailed or archived alone. The Markdown links the PNG files, relative to its own folder.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    """``header`` and ``rows`` of plain-text cells; numeric columns are right-aligned."""

    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    """A PNG file on disk with its alternative text and an optional caption; ``half`` images sit two
    to a row in the HTML."""

    path: Path
    alt: str
    caption: str = ""
    half: bool = False


Block = Heading | Paragraph | Table | Image

_NUMBER = re.compile(r"^[-+−]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?\s*(%|pp|s)?( \(epoch \d+\))?$")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1250px; padding: 0 1rem; color: #1d2330; line-height: 1.45; }
h1 { border-bottom: 2px solid #3b6fb6; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccd3de; padding-bottom: .2rem; }
h3 { margin-top: 1.6rem; }
table { border-collapse: collapse; margin: .8rem 0 1.2rem; font-size: .9rem; }
th, td { border: 1px solid #ccd3de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #eef2f8; position: sticky; top: 0; }
tr:nth-child(even) td { background: #f8f9fb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0 1.8rem; }
figure.half { display: inline-block; width: 48.5%; margin-right: 1%; vertical-align: top; }
figure img { max-width: 100%; height: auto; border: 1px solid #e2e6ee; }
figcaption { color: #555e6e; font-size: .9rem; margin-top: .3rem; }
p.note { color: #555e6e; }
""".strip()


def is_numeric(cell: str) -> bool:
    """True for cells like ``0.8123``, ``85.1%``, ``12,000``, ``3.2 pp``, ``91.0% (epoch 7)``."""
    return bool(_NUMBER.match(cell.strip()))


def _numeric_columns(table: Table) -> list[bool]:
    """Columns whose non-empty, non-dash cells are all numbers."""
    columns = []
    for i in range(len(table.header)):
        cells = [row[i] for row in table.rows if row[i].strip() not in ("", "–")]
        columns.append(bool(cells) and all(is_numeric(cell) for cell in cells))
    return columns


# ---------------------------------------------------------------------- HTML
def _html_table(table: Table) -> str:
    numeric = _numeric_columns(table)
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table.header)
    body = "\n".join(
        "<tr>" + "".join(f'<td class="num">{html.escape(cell)}</td>' if num else f"<td>{html.escape(cell)}</td>"
                         for cell, num in zip(row, numeric)) + "</tr>"
        for row in table.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _html_image(image: Image) -> str:
    data = base64.b64encode(image.path.read_bytes()).decode("ascii")
    caption = f"<figcaption>{html.escape(image.caption)}</figcaption>" if image.caption else ""
    kind = ' class="half"' if image.half else ""
    return (f'<figure{kind}><img src="data:image/png;base64,{data}" alt="{html.escape(image.alt)}">'
            f"{caption}</figure>")


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f'<p class="note">{html.escape(block.text)}</p>'
    if isinstance(block, Table):
        return _html_table(block)
    return _html_image(block)


def to_html(title: str, blocks: list[Block]) -> str:
    """A complete, self-contained HTML page of ``blocks``."""
    body = "\n".join(_html_block(block) for block in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n")


# ---------------------------------------------------------------------- Markdown
def _md_cell(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    numeric = _numeric_columns(table)
    lines = ["| " + " | ".join(_md_cell(c) for c in table.header) + " |",
             "|" + "|".join("---:" if num else ":---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _md_block(block: Block, folder: Path) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Table):
        return _md_table(block)
    link = Path(os.path.relpath(block.path, folder)).as_posix()
    caption = f"\n\n*{block.caption}*" if block.caption else ""
    return f"![{block.alt}]({link}){caption}"


def to_markdown(title: str, blocks: list[Block], folder: Path) -> str:
    """Markdown of ``blocks``; images are linked relative to ``folder`` (where the file goes)."""
    return "\n\n".join([f"# {title}", *(_md_block(block, folder) for block in blocks)]) + "\n"

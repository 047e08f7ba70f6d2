"""The pieces of a report page: escaped text, tables (sortable, exact values on hover),
figures inlined as data: URLs, and the page around them with its inline style and script.

Nothing on a page is fetched: no URL other than data: appears in what is written here.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.runs.files import REPORT, write_atomic

GENERATOR = "nncli report"  # <meta name="generator">: marks a file nncli may overwrite
ERRORS_ID = "nncli-errors"  # the page's own script errors are written there (tests read it)

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 color:#1d2327;background:#fff}
main{max-width:1180px;margin:0 auto;padding:20px 28px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;
 border-bottom:1px solid #dde1e4;padding-bottom:4px}
.sub{color:#5b656d;margin:0 0 12px;word-break:break-all}
.status{display:inline-block;padding:1px 9px;border-radius:10px;color:#fff;
 background:#6c757d;font-weight:600}
.status.completed{background:#2e7d32}.status.failed,.status.diverged{background:#c62828}
.status.interrupted,.status.killed,.status.running{background:#b26a00}
.error{background:#fdecea;border-left:4px solid #c62828;padding:6px 10px;white-space:pre-wrap}
.warning{background:#fff4e5;border-left:4px solid #b26a00;padding:6px 10px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}
dt{color:#5b656d}dd{margin:0;word-break:break-word}
table{border-collapse:collapse;margin:4px 0 8px}
th,td{border:1px solid #dde1e4;padding:3px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.scroll td{white-space:nowrap}
th{background:#f3f5f6;white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:after{content:" \\2195";color:#9aa3a9}
table.sortable th[data-dir=asc]:after{content:" \\2191";color:#1d2327}
table.sortable th[data-dir=desc]:after{content:" \\2193";color:#1d2327}
tr:hover td{background:#f7fafc}
.scroll{max-height:480px;overflow:auto;display:inline-block;max-width:100%}
.figures{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #dde1e4;padding:6px;background:#fff}
figure img{display:block;width:520px;max-width:100%;height:auto}
figcaption{color:#5b656d;font-size:12px;margin-top:4px}
pre{background:#f6f8fa;padding:8px 10px;overflow:auto;margin:4px 0}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.cols{display:flex;flex-wrap:wrap;gap:16px}.cols>div{flex:1 1 420px;min-width:0}
"""

# Errors of the page's own scripts go into a hidden element: a test reads them from the DOM.
_CATCH = f"""
(function(){{var out=document.getElementById("{ERRORS_ID}");
function add(m){{out.textContent+=m+"\\n";}}
window.addEventListener("error",function(e){{add(e.message||("cannot load "+
(e.target&&(e.target.src||e.target.href))));}},true);
window.addEventListener("unhandledrejection",function(e){{add(String(e.reason));}});
var c=console.error;console.error=function(){{add(Array.prototype.join.call(arguments," "));
c.apply(console,arguments);}};}})();
"""

# A click on a column's header sorts the table by it (numbers by value; blanks, NaN and
# infinities last);
# a second click reverses the order.
_SORT = """
document.querySelectorAll("table.sortable th").forEach(function(th){
th.addEventListener("click",function(){
var table=th.closest("table"),body=table.tBodies[0],i=th.cellIndex;
var dir=th.dataset.dir==="asc"?"desc":"asc",sign=dir==="asc"?1:-1;
table.querySelectorAll("th").forEach(function(h){delete h.dataset.dir;});
th.dataset.dir=dir;
function key(row){var c=row.cells[i];if(!c||c.textContent==="")return null;
var v=c.dataset.v;if(v===undefined)return c.textContent;return v===""?null:parseFloat(v);}
var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=key(a),y=key(b);
if(x===null||y===null)return x===y?0:x===null?1:-1;
if(typeof x==="number"&&typeof y==="number")return sign*(x-y);
return sign*String(x).localeCompare(String(y),undefined,{numeric:true});});
rows.forEach(function(r){body.appendChild(r);});});});
"""


def text(value: Any) -> str:
    """Any value as escaped HTML text."""
    return escape(str(value))


def number(value: float) -> str:
    """A metric at a glance: 4 decimals in the usual range, scientific beyond it."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e5 else f"{value:.3e}"


def cell(value: Any) -> str:
    """A table cell; a number is right-aligned, rounded, with its exact value (as run.json
    writes it) on hover and for sorting."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        exact = repr(value) if isinstance(value, float) else str(value)
        sortable = exact if math.isfinite(value) else ""
        return f'<td class="n" data-v="{sortable}" title="{exact}">{number(value)}</td>'
    return f"<td>{'' if value is None else text(value)}</td>"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], sortable: bool = True) -> str:
    """`rows` as a table of `columns` (blank where a row lacks one)."""
    head = "".join(f"<th>{text(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    kind = ' class="sortable"' if sortable else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def facts(pairs: Iterable[tuple[str, Any]]) -> str:
    """A list of `name: value`, leaving out what is None."""
    items = "".join(
        f"<dt>{text(k)}</dt><dd>{text(v)}</dd>" for k, v in pairs if v is not None and v != ""
    )
    return f"<dl>{items}</dl>"


def figure(name: str, png: bytes) -> str:
    """A PNG inlined as a data: URL, with its file name below it."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{text(name)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{text(name)}</figcaption></figure>"
    )


def figures(items: Sequence[tuple[str, bytes]]) -> str:
    if not items:
        return '<p class="sub">no figures</p>'
    return '<div class="figures">' + "".join(figure(n, b) for n, b in items) + "</div>"


def pre(content: str) -> str:
    return f"<pre>{text(content)}</pre>"


def section(title: str, body: str) -> str:
    return f"<section><h2>{text(title)}</h2>{body}</section>"


def page(title: str, body: str) -> str:
    """The whole document: `body` (already HTML) with the inline style and scripts."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="{GENERATOR}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{text(title)}</title><style>{_STYLE}</style></head><body>"
        f'<pre id="{ERRORS_ID}" hidden></pre><script>{_CATCH}</script>'
        f"<main>{body}</main><script>{_SORT}</script></body></html>\n"
    )


def write_page(path: Path, html: str) -> Path:
    """Write a page atomically; a folder gets report.html inside it. NncliError where `path`
    is a file nncli did not write (nothing of the user's is overwritten)."""
    if path.is_dir():
        path = path / REPORT
    if path.exists() and not _ours(path):
        raise NncliError(
            f"{path} exists and is not a report nncli wrote; choose another --out "
            "(nncli overwrites only its own reports)"
        )
    write_atomic(path, html)
    return path


def _ours(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(2048)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}">'.encode() in head

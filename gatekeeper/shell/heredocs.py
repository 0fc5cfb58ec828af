"""Here-documents as bash reads them: where a body ends, and what text it is.

bash reads a body line by line: it joins a backslash-newline first when the delimiter is
unquoted, strips leading tabs for ``<<-``, and ends the body at the first line equal to the
delimiter (or at the end of the input). tree-sitter finds other ends in some of those cases;
:func:`heredoc_boundary_problem` says when, so that such a line is never allowed.
"""

from __future__ import annotations

from tree_sitter import Node

from gatekeeper.shell.words import node_text


def heredoc_raw_body(r: Node) -> str:
    """The body of a here-document as it stands in the source, from the start of its first
    line to the start of its delimiter line (tree-sitter's own body node starts after the
    tabs of a ``<<-`` body and ends before those of its delimiter line)."""
    body = next((c for c in r.children if c.type == "heredoc_body"), None)
    end = next((c for c in r.children if c.type == "heredoc_end"), None)
    if body is None:
        return ""
    root = r
    while root.parent is not None:
        root = root.parent
    data = root.text or b""
    start = data.rfind(b"\n", 0, body.start_byte) + 1
    stop = data.rfind(b"\n", 0, end.start_byte) + 1 if end is not None else body.end_byte
    stop = max(stop, start)
    return data[start:stop].decode("utf-8", "surrogateescape")


def heredoc_boundary_problem(r: Node, body: str, *, strip_tabs: bool, quoted: bool) -> str | None:
    """Why bash may end this here-document elsewhere than tree-sitter did, or None.

    bash reads a body line by line, joins a backslash-newline first when the delimiter is
    unquoted, strips leading tabs for ``<<-``, and ends at the first line equal to the
    delimiter (or at the end of the input).
    """
    start = next((c for c in r.children if c.type == "heredoc_start"), None)
    end = next((c for c in r.children if c.type == "heredoc_end"), None)
    if start is None:
        return "a here-document without a delimiter"
    delimiter = _unquote_delimiter(node_text(start)) if quoted else node_text(start)
    if end is None:
        return "a here-document that never ends"
    end_line = node_text(end)
    if (end_line.lstrip("\t") if strip_tabs else end_line) != delimiter:
        return "a here-document whose last line is not its delimiter"
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    logical: list[str] = []
    pending = ""
    for line in lines:
        text = pending + line
        if not quoted and _ends_in_escape(text):
            pending = text[:-1]
            continue
        pending = ""
        logical.append(text)
    if pending:
        return "a backslash-newline joins the here-document's last line with its delimiter"
    for line in logical:
        if (line.lstrip("\t") if strip_tabs else line) == delimiter:
            return "bash ends this here-document at an earlier line"
    return None


def _ends_in_escape(line: str) -> bool:
    n = len(line) - len(line.rstrip("\\"))
    return n % 2 == 1


def _unquote_delimiter(raw: str) -> str:
    """Quote removal on a here-document delimiter word (bash expands nothing in it)."""
    out: list[str] = []
    i, quote = 0, ""
    while i < len(raw):
        ch = raw[i]
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                out.append(ch)
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch == "\\" and i + 1 < len(raw) and raw[i + 1] in '$`"\\':
                out.append(raw[i + 1])
                i += 1
            else:
                out.append(ch)
        elif ch == "\\" and i + 1 < len(raw):
            out.append(raw[i + 1])
            i += 1
        elif ch in "'\"":
            quote = ch
        else:
            out.append(ch)
        i += 1
    return "".join(out)

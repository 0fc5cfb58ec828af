"""Making text safe to show a person: every invisible or control character made visible."""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e"}


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """Return ``text`` with control, bidi and other invisible characters escaped (``\\u202e``).

    What a terminal would act on (escape sequences) or hide (zero-width, bidi overrides) is
    shown as an escape, so a person sees exactly what will run.
    """
    out: list[str] = []
    for ch in text:
        o = ord(ch)
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        elif o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        elif o > 0x7F and unicodedata.category(ch) in ("Cf", "Zl", "Zp", "Co", "Cn", "Cs", "Zs"):
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    return "".join(out)

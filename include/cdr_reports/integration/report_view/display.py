"""How operator ids (and other free text from the database) are shown: visibly, never spoofable.

An operator id is whatever the CDR source stored: up to 255 characters, any Unicode. Shown as is,
a right-to-left override reorders the text after it (``abc\\u202egnp.exe`` reads "abcexe.png"),
zero-width characters make two different ids look identical, and a 255-character id pushes the
numbers off-screen. So the view, the e-mail and the chart show :func:`visible_text`: every
invisible or direction-changing character as its escape (``\\u202E``), the text isolated from its
neighbours (``<bdi>`` / ``unicode-bidi: isolate``), long values wrapped in the table and
shortened (full value on hover) where space is fixed. The CSV keeps the exact stored value.
"""

from __future__ import annotations

import html
import unicodedata

# Categories never shown as themselves: format (bidi embeddings/overrides/isolates, LRM/RLM/ALM,
# zero-width space/joiners, word joiner, BOM, soft hyphen, tags), controls, line/paragraph
# separators, private use and unassigned code points, surrogates.
_HIDDEN_CATEGORIES = frozenset({"Cf", "Cc", "Zl", "Zp", "Co", "Cn", "Cs"})
SHORT_LENGTH = 40


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def visible_text(value: object) -> str:
    """``value`` with every invisible or direction-changing character written as its escape.

    Spaces other than U+0020 (no-break, ideographic, ...) are escaped too, so that "a b" and
    "a\\u00A0b" stay distinguishable; a backslash is doubled so that an id that itself contains
    the text ``\\u202E`` cannot pass for the character.
    """
    text = "" if value is None else str(value)
    out = []
    for char in text:
        category = unicodedata.category(char)
        if char == "\\":
            out.append("\\\\")
        elif category in _HIDDEN_CATEGORIES or (category == "Zs" and char != " "):
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


def short_text(value: object, length: int = SHORT_LENGTH) -> str:
    """:func:`visible_text`, cut to ``length`` characters with an ellipsis when longer."""
    text = visible_text(value)
    return text if len(text) <= length else text[: length - 1] + "…"


def attribute_value(value: object) -> str:
    """``value`` escaped for an HTML attribute, hidden characters as character references.

    For attributes that carry the exact value (an ``<option>``'s value goes back to the server, a
    cell's sort key): the browser decodes ``&#x202E;`` to the very character, while the page's
    source holds no raw invisible or direction-changing character.
    """
    text = html.escape("" if value is None else str(value), quote=True)
    return "".join(
        f"&#x{ord(char):X};"
        if unicodedata.category(char) in _HIDDEN_CATEGORIES or (unicodedata.category(char) == "Zs" and char != " ")
        else char
        for char in text
    )

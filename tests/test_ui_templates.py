"""Every word a template shows is marked for translation, and the palette is readable.

The catalogs' own test (``test_translations.py``) proves that every *marked* sentence is
translated; this one proves nothing was left unmarked: with the Jinja tags, comments,
HTML tags and ``<code>`` (commands, typed as they are) taken out, no letters may remain, and no attribute a person reads (``aria-label``,
``title``, ``placeholder``, ``alt``) may hold literal words. The contrast check computes
WCAG 2.1 contrast ratios (relative luminance, section 1.4.3) from the stylesheet's colours.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exchange.ui.rendering import STATIC, TEMPLATES

TEMPLATE_FILES = sorted(TEMPLATES.rglob("*.html"))
#: Shown as they are in every language: symbols, not words.
NOT_WORDS = {"ε", "·", "×", "±", "⬡", "✓", "…", "—", "–", "→", "←"}
#: The language switch names each language in itself, whatever the page's language.
SELF_NAMED = {"English", "Français", "Español", "العربية"}

#: A command line or an identifier is written as it is typed, in every language.
_CODE = re.compile(r"<code>.*?</code>", re.DOTALL)
#: A macro that writes attributes (``aria-invalid="true"``), not text a person reads.
_ATTRIBUTE_MACRO = re.compile(r"\{%-?\s*macro\b.*?%\}([^<]*?)\{%-?\s*endmacro\s*-?%\}", re.DOTALL)
_JINJA = re.compile(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
_TAG = re.compile(r"<[^>]*>", re.DOTALL)
_ENTITY = re.compile(r"&[#\w]+;")
_READ_ATTRIBUTE = re.compile(r'\b(aria-label|title|placeholder|alt)="([^"]*)"')


def words_left(template: str) -> list[str]:
    text = _CODE.sub(" ", template)
    text = _ATTRIBUTE_MACRO.sub(" ", text)
    text = _JINJA.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _ENTITY.sub(" ", text)
    return [w for w in text.split() if any(c.isalpha() for c in w) and w not in NOT_WORDS]


def test_there_are_templates_to_check() -> None:
    assert len(TEMPLATE_FILES) >= 20


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_template_shows_an_unmarked_word(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert words_left(source) == [], "mark these with {{ _('...') }}"
    for attribute, value in _READ_ATTRIBUTE.findall(source):
        literal = _JINJA.sub("", value)
        if re.fullmatch(r"[\w.@-]+:[\w.@/-]+", literal):
            continue  # an example identifier (``token:NAME``), typed as it is
        assert not any(c.isalpha() for c in literal), (attribute, value)


def test_the_check_sees_an_unmarked_word() -> None:
    assert words_left('<p class="x">{{ _("Marked") }} Forgotten</p>') == ["Forgotten"]
    assert words_left("<td>{{ n|number }} ε</td>{# a comment #}") == []
    assert _READ_ATTRIBUTE.findall('<a title="Open it">') == [("title", "Open it")]


def _luminance(hex_colour: str) -> float:
    """WCAG 2.1 relative luminance of an sRGB colour like ``#1d4f91``."""
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_contrast_formula_matches_known_values() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # famously just fails


PALETTE = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", (STATIC / "style.css").read_text()))

#: (text, background) pairs the pages use for text; each must reach 4.5:1 (WCAG 1.4.3).
TEXT_PAIRS = [
    ("ink", "paper"),
    ("ink", "wash"),
    ("ink-soft", "paper"),
    ("ink-soft", "wash"),
    ("link", "paper"),
    ("link", "wash"),
    ("good", "good-wash"),
    ("bad", "bad-wash"),
    ("warn", "warn-wash"),
    ("bad", "paper"),
    ("good", "paper"),
]


@pytest.mark.parametrize(("text", "background"), TEXT_PAIRS)
def test_text_colours_reach_wcag_aa(text: str, background: str) -> None:
    assert contrast(PALETTE[text], PALETTE[background]) >= 4.5


@pytest.mark.parametrize("background", ["brand", "brand-dark", "good", "bad"])
def test_white_text_on_coloured_bars_and_buttons_reaches_wcag_aa(background: str) -> None:
    assert contrast("#ffffff", PALETTE[background]) >= 4.5


def test_the_focus_ring_stands_out_against_the_page_and_the_masthead() -> None:
    """Non-text contrast (WCAG 1.4.11): 3:1 for the focus indicator."""
    assert contrast(PALETTE["focus"], PALETTE["brand"]) >= 3
    assert contrast(PALETTE["ink"], PALETTE["paper"]) >= 3  # the ring's dark outer edge

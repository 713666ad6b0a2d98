"""The gettext catalogs are complete: none stale, untranslated, fuzzy, or with wrong placeholders."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from exchange import i18n
from schemas.errors import MESSAGES, ROW_MESSAGES, InvalidInputError, Message, RowError
from schemas.labels import LANGUAGES, Language

ROOT = Path(__file__).resolve().parent.parent
TRANSLATED: tuple[Language, ...] = tuple(lang for lang in LANGUAGES if lang != "en")


def load(path: Path, language: str | None = None) -> Catalog:
    with path.open("rb") as po:
        return read_po(po, locale=language)


def ids(catalog: Catalog) -> set[object]:
    return {m.id for m in catalog if m.id}


def fields(text: str) -> set[str]:
    """``{name}`` placeholders (Python code) and ``%(name)s`` ones (the dashboard's templates)."""
    if "%(" in text:
        return set(re.findall(r"%\((\w+)\)[sd]", text))
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_the_template_holds_every_marked_sentence_and_no_other() -> None:
    """Fails when code marks a sentence the .pot lacks (or drops one): run ``pybabel extract``."""
    assert ids(load(i18n.LOCALES / "messages.pot")) == ids(i18n.extract(ROOT))


@pytest.mark.parametrize("language", TRANSLATED)
def test_each_catalog_translates_every_sentence(language: Language) -> None:
    template = load(i18n.LOCALES / "messages.pot")
    catalog = load(i18n.LOCALES / language / "LC_MESSAGES" / "messages.po", language)
    assert ids(catalog) == ids(template), "run pybabel update"
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, message.id
        sources = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert len(strings) == (catalog.num_plurals if isinstance(message.id, tuple) else 1)
        for text in strings:
            assert text, f"untranslated in {language}: {message.id!r}"
            assert fields(text) <= fields(sources[-1]), f"unknown placeholder: {text!r}"
        if not isinstance(message.id, tuple):
            assert fields(strings[0]) == fields(message.id), message.id


def test_a_fuzzy_or_empty_message_is_caught(tmp_path: Path) -> None:
    """The check above can fail: a catalog with a fuzzy, empty entry is read as such."""
    po = tmp_path / "messages.po"
    po.write_text('msgid ""\nmsgstr ""\n\n#, fuzzy\nmsgid "a {field}"\nmsgstr ""\n')
    (message,) = (m for m in load(po, "fr") if m.id)
    assert message.fuzzy
    assert not message.string


SAMPLE = RowError(
    row=7,
    field="cases",
    value="XA-P1-D1",
    code="ragged_row",
    params={
        "cells": 9,
        "expected": 8,
        "json_type": "string",
        "maximum": 1_000_000,
        "allowed": "female, male",
        "year": "2025",
        "weeks": 52,
        "week": 53,
        "limit": 64,
        "character": "U+0000",
        "first_row": 2,
        "other_row": 3,
        "ancestor": "XA-P1",
        "fields": ("week", "sex"),
    },
)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("code", sorted(ROW_MESSAGES))
def test_every_code_reads_in_every_language(code: str, language: Language) -> None:
    from dataclasses import replace

    from schemas.standard import WEEKLY_EPI

    sentence = i18n.row_detail(replace(SAMPLE, code=code), language, WEEKLY_EPI)
    assert "{" not in sentence
    assert "}" not in sentence
    if language != "en":
        assert sentence != i18n.row_detail(replace(SAMPLE, code=code), "en", WEEKLY_EPI)
    if "{field}" in ROW_MESSAGES[code]:
        assert WEEKLY_EPI.field_by_name["cases"].label.get(language) in sentence
    if "{fields}" in ROW_MESSAGES[code]:
        assert WEEKLY_EPI.field_by_name["sex"].label.get(language) in sentence


def test_catalogs_ship_with_the_package() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = project["tool"]["setuptools"]["package-data"]["*"]
    assert "*.po" in data
    assert "*.pot" in data
    assert any(d.startswith("babel") for d in project["project"]["dependencies"])


#: Texts that are the same in English and another language, each checked by a person
#: (cognates, loanwords, symbols): English -> those languages. Anything else that reads
#: as English is a missed translation.
SAME_AS_ENGLISH = {
    "%(count)s codes": {"fr"},
    "%(size)s bytes": {"es"},
    "Action": {"fr"},
    "Actor": {"es"},
    "Budget": {"fr"},
    "Budgets": {"fr"},
    "Code": {"fr"},
    "Date": {"fr"},
    "Description": {"fr"},
    "Dimensions": {"fr"},
    "Embargo": {"fr", "es"},
    "Error:": {"es"},
    "Incidents": {"fr"},
    "OK": {"fr", "es"},
    "Pages": {"fr"},
    "Question": {"fr"},
    "Signature": {"fr"},
    "Type": {"fr"},
    "Verdict": {"fr"},
    "Version": {"fr"},
    "auditor": {"es"},
    "ε %(epsilon)s": {"fr", "es"},
}
#: Sentences that French and Spanish legitimately write alike.
ALIKE = {"%(schema)s from %(provider)s", "Embargo", "OK", "ε %(epsilon)s"}


def test_no_catalog_copies_english_or_another_language() -> None:
    """A sentence left in English, or pasted from the wrong catalog, is caught."""
    catalogs = {
        lang: load(i18n.LOCALES / lang / "LC_MESSAGES" / "messages.po", lang) for lang in TRANSLATED
    }
    for message in load(i18n.LOCALES / "messages.pot"):
        if not message.id:
            continue
        texts = {lang: str(catalog[message.id].string) for lang, catalog in catalogs.items()}
        english = message.id[-1] if isinstance(message.id, tuple) else message.id
        copied = {lang for lang, text in texts.items() if text == english}
        assert copied <= SAME_AS_ENGLISH.get(english, set()), message.id
        if message.id not in ALIKE:
            assert len(set(texts.values())) == len(texts), (message.id, texts)


def _sample(code: str) -> Message:
    names = fields(MESSAGES[code])
    return Message.of(code, **{n: 1234 if n in NUMERIC else "X-1" for n in names})


NUMERIC = {"declared", "limit", "byte", "columns", "fields", "line", "column", "digits"}


@pytest.mark.parametrize("language", TRANSLATED)
@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_every_problem_sentence_reads_in_every_language(code: str, language: Language) -> None:
    message = _sample(code)
    sentence = i18n.sentence(message, language)
    assert "{" not in sentence.replace("{}", "")
    assert sentence != message.english()
    assert sentence.count("X-1") == message.english().count("X-1")


def test_a_message_refuses_params_its_sentence_does_not_take() -> None:
    with pytest.raises(ValueError, match="charset_not_read takes"):
        Message.of("charset_not_read", charset="x", extra="y")
    with pytest.raises(ValueError, match="takes"):
        Message.of("charset_not_read")
    with pytest.raises(KeyError):
        Message.of("no_such_code")


def test_an_error_with_a_message_is_the_english_sentence() -> None:
    error = InvalidInputError.coded("csv_not_utf8", byte=12_345)
    assert str(error) == "the CSV is not UTF-8 (byte 12345 is invalid)"
    assert error.message is not None
    assert error.message.code == "csv_not_utf8"
    assert dict(InvalidInputError("plain").problem_extra) == {}


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_problem_title_is_translated(language: Language) -> None:
    from exchange.api import problems

    titles = {title for _, _, title in problems._STATUS} | set(problems._HTTP_TITLES.values())
    titles |= {"Bad request", "HTTP error", "Internal error", "Invalid request"}
    for title in titles:
        assert i18n.translated(title, language) not in ("", title), title

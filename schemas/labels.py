"""Labels in the four working languages of the exchange (English, French, Spanish, Arabic)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Language = Literal["en", "fr", "es", "ar"]
LANGUAGES: tuple[Language, ...] = get_args(Language)
#: Not read yet: the coming web dashboard sets ``dir="rtl"`` for these (Arabic). Keep it.
RIGHT_TO_LEFT: frozenset[Language] = frozenset({"ar"})


class Label(BaseModel):
    """One human-readable text in every supported language; none may be left empty."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    en: str = Field(min_length=1)
    fr: str = Field(min_length=1)
    es: str = Field(min_length=1)
    ar: str = Field(min_length=1)

    def get(self, language: Language) -> str:
        return str(getattr(self, language))


def negotiate_language(accept_language: str | None) -> Language:
    """Pick the best supported language from an ``Accept-Language`` header (RFC 9110 §12.5.4).

    Unknown or malformed headers fall back to English rather than failing: a label in the
    wrong language is better than no answer.
    """
    if not accept_language:
        return "en"
    ranked: list[tuple[float, int, Language]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else "en"

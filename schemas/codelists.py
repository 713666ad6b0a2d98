"""Public code lists: the closed domains of coded dimensions.

A dimension with a public domain can be released over its *full* key set (every code, zero
cells included), which is what keeps the set of released keys from revealing anything.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from schemas.labels import Label


class Code(BaseModel):
    """One code of a list. Age bands carry inclusive bounds so imports can convert conventions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    label: Label
    min_age: int | None = None
    max_age: int | None = None  # inclusive; None means open-ended


class CodeList(BaseModel):
    """A named, closed list of codes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    label: Label
    codes: tuple[Code, ...]

    @model_validator(mode="after")
    def _unique(self) -> CodeList:
        seen = [c.code for c in self.codes]
        if len(seen) != len(set(seen)):
            raise ValueError(f"code list {self.name} repeats a code")
        return self

    def values(self) -> frozenset[str]:
        return frozenset(c.code for c in self.codes)

    def ordered(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.codes)

    def get(self, code: str) -> Code:
        for c in self.codes:
            if c.code == code:
                return c
        raise KeyError(code)


def _l(en: str, fr: str, es: str, ar: str) -> Label:
    return Label(en=en, fr=fr, es=es, ar=ar)


def _band(lo: int, hi: int | None) -> Code:
    text = f"{lo}-{hi}" if hi is not None else f"{lo}+"
    return Code(
        code=text,
        min_age=lo,
        max_age=hi,
        label=_l(f"{text} years", f"{text} ans", f"{text} años", f"{text} سنة"),
    )


SEX = CodeList(
    name="sex",
    label=_l("Sex", "Sexe", "Sexo", "الجنس"),
    codes=(
        Code(code="female", label=_l("Female", "Femme", "Mujer", "أنثى")),
        Code(code="male", label=_l("Male", "Homme", "Hombre", "ذكر")),
        Code(code="other", label=_l("Other", "Autre", "Otro", "آخر")),
        Code(code="unknown", label=_l("Unknown", "Inconnu", "Desconocido", "غير معروف")),
    ),
)

AGE_BAND = CodeList(
    name="age_band",
    label=_l("Age band", "Tranche d'âge", "Grupo de edad", "الفئة العمرية"),
    codes=(
        _band(0, 4),
        _band(5, 14),
        _band(15, 24),
        _band(25, 44),
        _band(45, 64),
        _band(65, None),
        Code(
            code="unknown",
            label=_l("Unknown age", "Âge inconnu", "Edad desconocida", "عمر غير معروف"),
        ),
    ),
)

POPULATION_GROUP = CodeList(
    name="population_group",
    label=_l("Population group", "Groupe de population", "Grupo de población", "الفئة السكانية"),
    codes=(
        Code(
            code="host_community",
            label=_l("Host community", "Communauté hôte", "Comunidad de acogida", "المجتمع المضيف"),
        ),
        Code(
            code="idp",
            label=_l(
                "Internally displaced people",
                "Personnes déplacées internes",
                "Personas desplazadas internas",
                "النازحون داخليا",
            ),
        ),
        Code(
            code="refugee",
            label=_l(
                "Refugees and asylum seekers",
                "Réfugiés et demandeurs d'asile",
                "Refugiados y solicitantes de asilo",
                "اللاجئون وطالبو اللجوء",
            ),
        ),
        Code(code="returnee", label=_l("Returnees", "Rapatriés", "Retornados", "العائدون")),
        Code(code="migrant", label=_l("Migrants", "Migrants", "Migrantes", "المهاجرون")),
    ),
)

OUTCOME = CodeList(
    name="outcome",
    label=_l("Outcome", "Issue", "Desenlace", "المآل"),
    codes=(
        Code(
            code="under_treatment",
            label=_l("Under treatment", "En traitement", "En tratamiento", "قيد العلاج"),
        ),
        Code(code="recovered", label=_l("Recovered", "Guéri", "Recuperado", "متعافى")),
        Code(code="died", label=_l("Died", "Décédé", "Fallecido", "متوفى")),
        Code(code="unknown", label=_l("Unknown", "Inconnue", "Desconocido", "غير معروف")),
    ),
)

CODE_LISTS: dict[str, CodeList] = {c.name: c for c in (SEX, AGE_BAND, POPULATION_GROUP, OUTCOME)}

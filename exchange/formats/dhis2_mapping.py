"""The node's ``dhis2.yaml``: which DHIS2 metadata means which schema, measure and code.

A DHIS2 instance names its data elements, category option combos, organisation units and
data sets by UID (or by code, with ``idScheme=CODE``); a node knows schemas, measures,
dimension codes and gazetteer areas. The mapping file says which is which, and
``compile_mapping`` checks it against the schema registry and the gazetteer once, naming
every mistake, so that an import only looks identifiers up in dictionaries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.codelists import CODE_LISTS
from schemas.gazetteer import Gazetteer
from schemas.model import FieldType, ReportSchema, SchemaKind
from schemas.registry import SchemaRegistry

MAPPING_FILE = "dhis2.yaml"
#: DHIS2's default category option combo and attribute option combo (the same object).
DEFAULT_COMBO_UID = "HllvX50cXC0"
DEFAULT_COMBO_CODE = "default"
_UID = re.compile(r"^[A-Za-z][A-Za-z0-9]{10}$")

IdScheme = Literal["UID", "CODE"]


class MappingError(ValueError):
    """A mapping file that cannot be used; ``problems`` names each mistake."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str | None = Field(default=None, min_length=1, max_length=11)
    code: str | None = Field(default=None, min_length=1, max_length=50)

    def name(self) -> str:
        return f"uid {self.uid!r}" if self.uid else f"code {self.code!r}"


class DataElement(_Entry):
    schema_id: str = Field(alias="schema")
    measure: str
    dimensions: dict[str, str] = Field(default_factory=dict)  # when not disaggregated


class Combo(_Entry):
    dimensions: dict[str, str] = Field(default_factory=dict)


class OrgUnit(_Entry):
    area: str


class DataSet(_Entry):
    schema_id: str = Field(alias="schema")


class SchemaRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A cell stated only in part: DHIS2 does not store zeros (unless a data element is
    #: ``zeroIsSignificant``), so an unstated measure is zero by default; ``refuse`` makes
    #: it a conflict, for instances that send zeros.
    absent_values: Literal["zero", "refuse"] = "zero"


class MappingFile(BaseModel):
    """``dhis2.yaml`` as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_elements: tuple[DataElement, ...] = Field(min_length=1)
    category_option_combos: tuple[Combo, ...] = ()
    attribute_option_combos: tuple[Combo, ...] = ()
    org_units: tuple[OrgUnit, ...] = Field(min_length=1)
    data_sets: tuple[DataSet, ...] = ()
    schemas: dict[str, SchemaRule] = Field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """Where one data element's values go: a schema's measure, with fixed dimension codes."""

    schema: ReportSchema
    measure: str
    dimensions: Mapping[str, str]


@dataclass(frozen=True)
class DhisMapping:
    """A checked mapping, as lookup tables per identifier scheme."""

    data_elements: Mapping[IdScheme, Mapping[str, Target]]
    category_option_combos: Mapping[IdScheme, Mapping[str, Mapping[str, str]]]
    attribute_option_combos: Mapping[IdScheme, Mapping[str, Mapping[str, str]]]
    org_units: Mapping[IdScheme, Mapping[str, str]]
    data_sets: Mapping[IdScheme, Mapping[str, ReportSchema]]
    rules: Mapping[str, SchemaRule]

    def rule(self, schema_id: str) -> SchemaRule:
        return self.rules.get(schema_id, SchemaRule())

    def summary(self) -> str:
        schemas = sorted(
            {t.schema.id for t in self.data_elements["UID"].values()}
            | {t.schema.id for t in self.data_elements["CODE"].values()}
        )
        return (
            f"{_count(self.data_elements)} data elements into {', '.join(schemas)}; "
            f"{_count(self.category_option_combos)} category option combos; "
            f"{_count(self.attribute_option_combos)} attribute option combos; "
            f"{_count(self.org_units)} organisation units; {_count(self.data_sets)} data sets"
        )


def _count(tables: Mapping[IdScheme, Mapping[str, object]]) -> int:
    """Entries in the file (DHIS2's default combo, always known, is not one unless mapped)."""
    uids = set(tables["UID"]).difference((DEFAULT_COMBO_UID,))
    codes = set(tables["CODE"]).difference((DEFAULT_COMBO_CODE,))
    return max(len(uids), len(codes))


def parse_mapping(document: Any) -> MappingFile:
    """The YAML document (already loaded) as a model; raises MappingError naming each fault."""
    if not isinstance(document, dict):
        raise MappingError([f"{MAPPING_FILE} must be a mapping with data_elements and org_units"])
    try:
        return MappingFile.model_validate(document)
    except ValidationError as exc:
        raise MappingError(
            f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()
        ) from None


def compile_mapping(document: Any, registry: SchemaRegistry, gazetteer: Gazetteer) -> DhisMapping:
    """Check the mapping against the schemas and the gazetteer; raises MappingError."""
    parsed = parse_mapping(document)
    problems: list[str] = []
    rules = dict(parsed.schemas)
    for schema_id in rules:
        _schema(schema_id, registry, problems, f"schemas.{schema_id}")
    elements: dict[IdScheme, dict[str, Target]] = {"UID": {}, "CODE": {}}
    for i, de in enumerate(parsed.data_elements):
        where = f"data_elements[{i}] ({de.name()})"
        _check_ids(de, where, problems)
        schema = _schema(de.schema_id, registry, problems, where)
        if schema is None:
            continue
        if de.measure not in schema.measure_by_name:
            measures = ", ".join(m.name for m in schema.measures)
            problems.append(
                f"{where}: {de.measure!r} is not a measure of {schema.id}; its measures are "
                f"{measures}"
            )
            continue
        _check_dimensions(de.dimensions, schema, where, problems)
        _add(
            elements,
            de,
            Target(schema, de.measure, MappingProxyType(de.dimensions)),
            where,
            problems,
        )
    schemas = {t.schema.id: t.schema for t in elements["UID"].values()} | {
        t.schema.id: t.schema for t in elements["CODE"].values()
    }
    combos = _combos(parsed.category_option_combos, "category_option_combos", schemas, problems)
    attributes = _combos(
        parsed.attribute_option_combos, "attribute_option_combos", schemas, problems
    )
    units: dict[IdScheme, dict[str, str]] = {"UID": {}, "CODE": {}}
    for i, ou in enumerate(parsed.org_units):
        where = f"org_units[{i}] ({ou.name()})"
        _check_ids(ou, where, problems)
        if ou.area not in gazetteer.by_code:
            problems.append(f"{where}: area {ou.area!r} is not in this node's gazetteer")
        _add(units, ou, ou.area, where, problems)
    sets: dict[IdScheme, dict[str, ReportSchema]] = {"UID": {}, "CODE": {}}
    for i, ds in enumerate(parsed.data_sets):
        where = f"data_sets[{i}] ({ds.name()})"
        _check_ids(ds, where, problems)
        schema = _schema(ds.schema_id, registry, problems, where)
        if schema is not None:
            _add(sets, ds, schema, where, problems)
    if problems:
        raise MappingError(problems)
    return DhisMapping(
        data_elements=_frozen(elements),
        category_option_combos=_frozen(combos),
        attribute_option_combos=_frozen(attributes),
        org_units=_frozen(units),
        data_sets=_frozen(sets),
        rules=MappingProxyType(rules),
    )


def _frozen(tables: Mapping[IdScheme, dict[str, Any]]) -> Mapping[IdScheme, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(v) for k, v in tables.items()})


def _check_ids(entry: _Entry, where: str, problems: list[str]) -> None:
    if entry.uid is None and entry.code is None:
        problems.append(f"{where}: give a uid, a code or both")
    if entry.uid is not None and not _UID.match(entry.uid):
        problems.append(
            f"{where}: {entry.uid!r} is not a DHIS2 UID (11 letters and digits, a letter first)"
        )


def _add(
    tables: dict[IdScheme, dict[str, Any]],
    entry: _Entry,
    value: object,
    where: str,
    problems: list[str],
) -> None:
    for scheme, key in (("UID", entry.uid), ("CODE", entry.code)):
        if key is None:
            continue
        if key in tables[scheme]:  # type: ignore[index]
            problems.append(f"{where}: {scheme.lower()} {key!r} is listed twice")
        tables[scheme][key] = value  # type: ignore[index]


def _schema(
    schema_id: str, registry: SchemaRegistry, problems: list[str], where: str
) -> ReportSchema | None:
    if schema_id not in registry:
        known = ", ".join(s.id for s in registry)
        problems.append(f"{where}: no schema {schema_id!r}; this node has {known}")
        return None
    schema = registry.get(schema_id)
    if not _holds_dhis2(schema):
        problems.append(
            f"{where}: {schema.id} cannot take DHIS2 data values; a DHIS2 data value is an "
            "aggregate count of an organisation unit and a period, so the schema must be "
            "aggregate, keyed by an area and an epi week, with only coded dimensions besides"
        )
        return None
    return schema


def _holds_dhis2(schema: ReportSchema) -> bool:
    if schema.kind != SchemaKind.AGGREGATE or schema.area_key is None or schema.week_from:
        return False
    types = [schema.field_by_name[k].type for k in schema.cell_key]
    if types.count(FieldType.WEEK) != 1:
        return False
    coded = {FieldType.CODE, FieldType.AREA, FieldType.WEEK}
    return all(f.type in coded or f.name in schema.measure_by_name for f in schema.fields)


def dimension_names(schema: ReportSchema) -> tuple[str, ...]:
    """The coded dimensions a mapping fills: the cell key but the area and the week."""
    return tuple(k for k in schema.cell_key if schema.field_by_name[k].type == FieldType.CODE)


def week_field(schema: ReportSchema) -> str:
    return next(k for k in schema.cell_key if schema.field_by_name[k].type == FieldType.WEEK)


def _check_dimensions(
    dimensions: Mapping[str, str], schema: ReportSchema, where: str, problems: list[str]
) -> bool:
    """Each dimension is a coded dimension of ``schema`` and each code is of its list."""
    ok = True
    names = dimension_names(schema)
    for name, code in dimensions.items():
        if name not in names:
            problems.append(
                f"{where}: {name!r} is not a coded dimension of {schema.id}; "
                f"its coded dimensions are {', '.join(names) or 'none'}"
            )
            ok = False
            continue
        codelist = schema.field_by_name[name].codelist
        codes = CODE_LISTS[codelist].codes if codelist else ()
        allowed = [c.code for c in codes]
        if code not in allowed:
            problems.append(
                f"{where}: {code!r} is not a code of {name}; allowed: {', '.join(allowed)}"
            )
            ok = False
    return ok


def _combos(
    entries: tuple[Combo, ...],
    section: str,
    schemas: Mapping[str, ReportSchema],
    problems: list[str],
) -> dict[IdScheme, dict[str, Mapping[str, str]]]:
    """Combos with their dimensions; each must fit every schema the data elements go to,
    and DHIS2's ``default`` combo means no dimension unless the file maps it."""
    tables: dict[IdScheme, dict[str, Mapping[str, str]]] = {"UID": {}, "CODE": {}}
    for i, combo in enumerate(entries):
        where = f"{section}[{i}] ({combo.name()})"
        _check_ids(combo, where, problems)
        for schema in schemas.values():
            _check_dimensions(combo.dimensions, schema, where, problems)
        _add(tables, combo, MappingProxyType(combo.dimensions), where, problems)
    tables["UID"].setdefault(DEFAULT_COMBO_UID, MappingProxyType({}))
    tables["CODE"].setdefault(DEFAULT_COMBO_CODE, MappingProxyType({}))
    return tables


def mapping_from_yaml(text: str, registry: SchemaRegistry, gazetteer: Gazetteer) -> DhisMapping:
    """``dhis2.yaml``'s text, checked; raises MappingError naming each mistake."""
    import yaml  # here, so that importing the model stays light for the CLI's --help

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError([f"{MAPPING_FILE} is not valid YAML: {exc}"]) from None
    return compile_mapping(document, registry, gazetteer)

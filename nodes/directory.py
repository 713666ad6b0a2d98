"""Creating a node directory: settings, identity key, gazetteer, and a migrated database."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pycountry

from nodes import migrate
from nodes.database import make_engine
from nodes.identity import NodeKey, create_key
from nodes.settings import SETTINGS_FILE, NodeSettings
from schemas.gazetteer import Area, Gazetteer


class NodeExistsError(FileExistsError):
    """``init`` never overwrites a node: keys and data would be lost."""


def sample_gazetteer(node_id: str, provinces: int = 4, districts: int = 3) -> Gazetteer:
    """A fictional two-level gazetteer (``XA-P1``, ``XA-P1-D1``...) for demos and tests."""
    areas = [Area(code=node_id, name=f"Republic of {node_id}", level=0)]
    for p in range(1, provinces + 1):
        province = f"{node_id}-P{p}"
        areas.append(Area(code=province, name=f"Province {p}", level=1, parent=node_id))
        for d in range(1, districts + 1):
            areas.append(
                Area(code=f"{province}-D{d}", name=f"District {p}.{d}", level=2, parent=province)
            )
    return Gazetteer(areas=tuple(areas))


def default_gazetteer(node_id: str) -> Gazetteer:
    """ISO 3166-2 subdivisions when the id is a real country code, else the fictional sample."""
    if pycountry.countries.get(alpha_2=node_id.upper()) is not None:
        return Gazetteer.from_iso3166(node_id)
    return sample_gazetteer(node_id)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def init_node(
    directory: Path,
    *,
    node_id: str,
    name: str,
    public_url: str = "http://127.0.0.1:8000",
    database_url: str = "",
    gazetteer: Gazetteer | None = None,
    week_system: str = "iso",
) -> tuple[NodeSettings, NodeKey]:
    """Create everything a node needs; refuse if the directory already holds a node."""
    directory = directory.expanduser().resolve()
    if (directory / SETTINGS_FILE).exists():
        raise NodeExistsError(f"{directory} already holds a node; init never overwrites one")
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    lines = [
        f"node_id = {_toml_string(node_id)}",
        f"name = {_toml_string(name)}",
        f"public_url = {_toml_string(public_url)}",
        f"week_system = {_toml_string(week_system)}",
    ]
    if database_url:
        lines.append(f"database_url = {_toml_string(database_url)}")
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must read back
    (directory / SETTINGS_FILE).write_text(text)
    settings = NodeSettings.load(directory)
    key = create_key(settings.keys_dir)
    chosen = gazetteer or default_gazetteer(node_id)
    settings.gazetteer_file.write_text(chosen.to_csv_text(), encoding="utf-8")
    engine = make_engine(settings.database)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return settings, key

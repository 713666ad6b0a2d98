"""Creating a node directory: settings, identity key, gazetteer, and a migrated database.

All or nothing: everything is checked in memory first, then the node is built in a
temporary directory beside the target and renamed into place, so a failed ``init`` leaves
no half-made node (an interrupted one at worst a ``.NAME.init-*`` directory, never a
directory that looks like a node).
"""

from __future__ import annotations

import shutil
import tempfile
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
    """Create everything a node needs, atomically; refuse if the directory holds anything.

    Raises NodeExistsError, or ValueError (pydantic's ValidationError) naming the invalid
    setting before anything is written.
    """
    directory = directory.expanduser().resolve()
    if (directory / SETTINGS_FILE).exists():
        raise NodeExistsError(f"{directory} already holds a node; init never overwrites one")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise NodeExistsError(
            f"{directory} exists and is not empty; init builds a node in a new or empty directory"
        )
    fields = {
        "node_id": node_id,
        "name": name,
        "public_url": public_url,
        "week_system": week_system,
    }
    if database_url:
        fields["database_url"] = database_url
    NodeSettings.model_validate({"directory": directory, **fields})  # before touching disk
    text = "".join(f"{key} = {_toml_string(value)}\n" for key, value in fields.items())
    tomllib.loads(text)  # what we write must read back
    chosen = gazetteer or default_gazetteer(node_id)

    created = _missing_ancestor(directory.parent)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.init-", dir=directory.parent))
    try:
        key = _build(staging, text, chosen)
        staging.chmod(0o750)
        staging.rename(directory)  # onto a missing or empty directory: atomic on POSIX
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    return NodeSettings.load(directory), key


def _build(staging: Path, settings_text: str, gazetteer: Gazetteer) -> NodeKey:
    (staging / SETTINGS_FILE).write_text(settings_text)
    settings = NodeSettings.load(staging)
    key = create_key(settings.keys_dir)
    settings.gazetteer_file.write_text(gazetteer.to_csv_text(), encoding="utf-8")
    engine = make_engine(settings.database)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return key


def _missing_ancestor(path: Path) -> Path | None:
    """The outermost directory of ``path`` that does not exist yet (what init would create)."""
    missing = None
    while not path.exists():
        missing = path
        if path.parent == path:
            break
        path = path.parent
    return missing

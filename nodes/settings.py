"""Node settings: a ``node.toml`` in the node directory, overridable by ``EXCHANGE_*`` variables.

The node refuses to start on insecure settings and says which; see ``insecure_reasons``.
"""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from schemas.periods import WeekSystem

SETTINGS_FILE = "node.toml"


class InsecureSettingsError(RuntimeError):
    """The node's settings would expose data or keys; the message lists every reason."""


class NodeSettings(BaseSettings):
    """Everything a node needs to know about itself. Build with ``NodeSettings.load(directory)``."""

    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="forbid", frozen=True)

    directory: Path
    node_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,31}$")
    name: str = Field(min_length=1, max_length=200)
    database_url: str = ""
    public_url: str = "http://127.0.0.1:8000"
    week_system: WeekSystem = "iso"
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # an upload session's whole file; each of its parts is at most max_body_bytes
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1024, le=1024**4)
    allow_plain_http: bool = False
    signature_max_age_seconds: int = Field(default=300, ge=5, le=3600)
    checkpoint_interval_seconds: int = Field(default=60, ge=1, le=3600)
    #: How long a dashboard sign-in lasts (never longer than the token it stands for).
    session_hours: int = Field(default=8, ge=1, le=24 * 7)
    #: The public transparency page (/ui/transparency): counts of releases and refusals and
    #: the ε spent per partner and schema, without sign-in. Off unless the operator says so.
    public_transparency: bool = False
    #: Run `exchange subscriptions sync` inside `exchange serve` every this many seconds;
    #: 0 (the default) leaves it to cron or a systemd timer.
    subscription_sync_seconds: int = Field(default=0, ge=0, le=7 * 24 * 3600)

    @field_validator("directory")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def load(cls, directory: Path, **overrides: Any) -> NodeSettings:
        """Read ``DIR/node.toml``; environment variables and ``overrides`` win over the file."""
        directory = directory.expanduser().resolve()
        toml_file = directory / SETTINGS_FILE
        if not toml_file.is_file():
            raise FileNotFoundError(
                f"{directory} is not a node directory (no {SETTINGS_FILE}); run 'exchange init' first"
            )

        class _FromFile(cls):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                return (
                    init_settings,
                    env_settings,
                    TomlConfigSettingsSource(settings_cls, toml_file),
                )

        loaded = _FromFile(directory=directory, **overrides)
        return cls.model_validate(loaded.model_dump())

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.directory / 'node.sqlite3'}"

    @property
    def keys_dir(self) -> Path:
        return self.directory / "keys"

    @property
    def gazetteer_file(self) -> Path:
        return self.directory / "gazetteer.csv"

    @property
    def policy_file(self) -> Path:
        return self.directory / "policy.yaml"

    def insecure_reasons(self) -> list[str]:
        """Why serving with these settings would be unsafe; empty when it is safe."""
        reasons: list[str] = []
        parts = urlsplit(self.public_url)
        if (
            parts.scheme == "http"
            and not self.allow_plain_http
            and not _is_loopback(parts.hostname or "")
        ):
            reasons.append(
                f"public_url {self.public_url} is plain HTTP on a non-loopback host; serve behind TLS "
                "or set allow_plain_http = true for a closed network"
            )
        if self.keys_dir.exists():
            for key in self.keys_dir.glob("*.pem"):
                mode = key.stat().st_mode
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    reasons.append(
                        f"key file {key} is readable by others (mode {oct(mode & 0o777)}); chmod 600 it"
                    )
        if self.directory.exists() and self.directory.stat().st_mode & stat.S_IWOTH:
            reasons.append(f"node directory {self.directory} is world-writable")
        return reasons

    def require_secure(self) -> None:
        reasons = self.insecure_reasons()
        if reasons:
            raise InsecureSettingsError("refusing to start: " + "; ".join(reasons))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

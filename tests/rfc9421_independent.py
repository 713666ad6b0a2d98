"""A small RFC 9421 signer and verifier written from the RFC, sharing no code with ours.

It uses only ``cryptography`` and the standard library, so tests can check the node against
a second reading of the standard rather than against itself. It covers what our profile
and the RFC's Ed25519 example need: derived components (``@method``, ``@target-uri``,
``@authority``, ``@path``, ``@status``), fields, the ``req`` flag and the ``key`` of a
Dictionary field. It reproduces RFC 9421 Appendix B.2.6 byte for byte (see its test).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

Fields = tuple[tuple[str, str], ...]
Param = tuple[str, str | int | bool]


@dataclass(frozen=True)
class Message:
    """A request (``status`` None) or a response (``request`` set), as field lines."""

    method: str = ""
    url: str = ""
    fields: Fields = ()
    body: bytes = b""
    status: int | None = None
    request: Message | None = None

    def field(self, name: str) -> str | None:
        """RFC 9421 §2.1: each line's value trimmed, lines joined with ", "."""
        values = [v.strip() for n, v in self.fields if n.lower() == name.lower()]
        return ", ".join(values) if values else None


def sf_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _param_value(value: str | int | bool) -> str:
    if value is True:
        return ""
    if isinstance(value, int):
        return f"={value}"
    return f"={sf_string(str(value))}"


def serialize_params(params: list[Param]) -> str:
    return "".join(f";{name}{_param_value(value)}" for name, value in params)


@dataclass(frozen=True)
class Component:
    name: str
    req: bool = False
    key: str | None = None
    #: The identifier exactly as received: parameter order is part of the signature base.
    received: str | None = field(default=None, compare=False)

    def identifier(self) -> str:
        if self.received is not None:
            return self.received
        params: list[Param] = []
        if self.key is not None:
            params.append(("key", self.key))
        if self.req:
            params.append(("req", True))
        return sf_string(self.name) + serialize_params(params)


def content_digest(body: bytes) -> str:
    """RFC 9530 ``sha-256`` Content-Digest."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def _dictionary_member(value: str, key: str) -> str:
    """The member ``key`` of a Dictionary field, re-serialized (byte sequences only)."""
    for label, member in re.findall(r"([a-z*][a-z0-9_.*-]*)=(:[A-Za-z0-9+/=]*:)", value):
        if label == key:
            return str(member)
    raise ValueError(f"no dictionary member {key!r}")


def component_value(message: Message, component: Component) -> str:
    source = message.request if component.req else message
    if source is None:
        raise ValueError("a ;req component needs the request")
    name = component.name
    parts = urlsplit(source.url)
    if name == "@method":
        return source.method
    if name == "@target-uri":
        return source.url
    if name == "@authority":
        return (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
    if name == "@path":
        return parts.path or "/"
    if name == "@status":
        assert source.status is not None
        return str(source.status)
    value = source.field(name)
    if value is None:
        raise ValueError(f"the message has no {name} field")
    return value if component.key is None else _dictionary_member(value, component.key)


def signature_params(components: list[Component], params: list[Param]) -> str:
    inner = " ".join(c.identifier() for c in components)
    return f"({inner}){serialize_params(params)}"


def signature_base(message: Message, components: list[Component], params_text: str) -> bytes:
    """RFC 9421 §2.5: one line per component, then ``@signature-params`` (no newline)."""
    lines = [f"{c.identifier()}: {component_value(message, c)}" for c in components]
    lines.append(f'"@signature-params": {params_text}')
    return "\n".join(lines).encode()


def sign(
    message: Message,
    key: Ed25519PrivateKey,
    *,
    label: str,
    components: list[Component],
    params: list[Param],
) -> Message:
    """``message`` with Signature-Input and Signature fields added under ``label``."""
    params_text = signature_params(components, params)
    signature = key.sign(signature_base(message, components, params_text))
    encoded = base64.b64encode(signature).decode()
    fields = (
        *message.fields,
        ("Signature-Input", f"{label}={params_text}"),
        ("Signature", f"{label}=:{encoded}:"),
    )
    return Message(
        message.method, message.url, fields, message.body, message.status, message.request
    )


_COMPONENT = re.compile(r'"([^"]+)"((?:;[a-z]+(?:="[^"]*")?)*)')


@dataclass(frozen=True)
class Verified:
    label: str
    components: list[Component]
    params_text: str


def verify(message: Message, public_key: Ed25519PublicKey) -> Verified:
    """Verify the one signature of ``message``; raise (InvalidSignature, ValueError) if not."""
    signature_input, signature = message.field("signature-input"), message.field("signature")
    if signature_input is None or signature is None:
        raise ValueError("unsigned")
    label, _, params_text = signature_input.partition("=")
    inner = params_text[1 : params_text.index(")")]
    components = []
    for name, raw in _COMPONENT.findall(inner):
        key = re.search(r';key="([^"]*)"', raw)
        components.append(
            Component(
                name,
                req=";req" in raw,
                key=key.group(1) if key else None,
                received=f'"{name}"{raw}',
            )
        )
    value = _dictionary_member(signature, label)
    public_key.verify(
        base64.b64decode(value.strip(":")), signature_base(message, components, params_text)
    )
    return Verified(label, components, params_text)

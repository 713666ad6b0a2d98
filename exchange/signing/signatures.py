"""RFC 9421 HTTP Message Signatures with Ed25519 node keys, over RFC 9530 Content-Digest.

A thin profile over ``http-message-signatures``: the library builds signature bases and
calls ``cryptography``; this module fixes what is covered, checks time with an injected
clock, checks the body against its digest, and translates failures into our errors.
The same code serves both ends: a node verifies a partner's request (from Starlette) and
signs its response; the peer client signs its request and verifies the response (httpx2).

Errors (``str(error)`` is safe to show the sender; details stay in ``__cause__``)::

    SignatureError               the message is not authenticated
    ├── MissingSignatureError    no Signature or Signature-Input header
    ├── MissingComponentError    a required component or parameter is not covered
    ├── UnknownKeyError          the key id is not registered, or was revoked
    ├── InvalidSignatureError    malformed, or does not verify
    ├── StaleSignatureError      created too long ago, or in the future
    └── DigestMismatchError      the body does not match its Content-Digest
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar
from urllib.parse import quote

import http_sf
import httpx2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    MappingKeyResolver,
)
from http_message_signatures.algorithms import ED25519
from http_sf.compat import InnerList
from starlette.requests import Request as StarletteRequest

from exchange.signing.content_digest import DigestMismatchError as DigestMismatchError
from exchange.signing.content_digest import SignatureError as SignatureError
from exchange.signing.content_digest import content_digest as content_digest
from exchange.signing.content_digest import verify_content_digest as verify_content_digest
from nodes.identity import key_id as key_id
from nodes.identity import parse_public_key as parse_public_key
from nodes.identity import public_key_text


class MissingSignatureError(SignatureError):
    """The message has no Signature or no Signature-Input header."""


class MissingComponentError(SignatureError):
    """The signature leaves out a component or parameter that our profile requires."""


class UnknownKeyError(SignatureError):
    """The key id names no registered key, or a revoked one."""


class InvalidSignatureError(SignatureError):
    """The signature is malformed, made for another purpose, or does not verify."""


class StaleSignatureError(SignatureError):
    """The signature was created more than max_age ago, or in the future beyond the skew."""


#: The label we sign with. Others may choose theirs (RFC 9421 §4.1); we never assume it.
LABEL: Final = "sig1"
REQUEST_TAG: Final = "crisis-exchange/request"
RESPONSE_TAG: Final = "crisis-exchange/response"
#: Always covered in requests; ``content-type`` is added whenever the message has one.
REQUEST_COMPONENTS: Final = ("@method", "@target-uri", "content-digest")


def response_components(request_label: str) -> tuple[str, ...]:
    """What a response covers: it is bound to the exact request it answers through that
    request's own signature, under whatever label its signer chose."""
    return (
        "@status",
        "content-digest",
        '"@method";req',
        '"@target-uri";req',
        f'"signature";req;key="{request_label}"',
    )


#: The response components for a request signed by us (label :data:`LABEL`).
RESPONSE_COMPONENTS: Final = response_components(LABEL)
#: Signature parameters every signature in our profile carries.
REQUIRED_PARAMETERS: Final = ("created", "keyid", "nonce", "tag")

Headers = tuple[tuple[str, str], ...]
KeyResolver = Callable[[str], Ed25519PublicKey | None]

#: The canonical public key text; one definition, in :mod:`nodes.identity`.
serialize_public_key = public_key_text


# -- messages -------------------------------------------------------------------------------


def _header(headers: Headers, name: str) -> str | None:
    values = [value for field, value in headers if field.lower() == name.lower()]
    return ", ".join(values) if values else None


@dataclass(frozen=True)
class RequestMessage:
    """A request as sent or received: absolute URL, field lines in order, body bytes.

    It holds untrusted data unchecked; judging it is :func:`verify_request`'s job.
    """

    method: str
    url: str
    headers: Headers = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """All field lines named ``name`` joined with ", ", or None."""
        return _header(self.headers, name)


@dataclass(frozen=True)
class ResponseMessage:
    """A response with the request it answers (needed for the ``;req`` components)."""

    status: int
    headers: Headers
    body: bytes
    request: RequestMessage

    def header(self, name: str) -> str | None:
        """All field lines named ``name`` joined with ", ", or None."""
        return _header(self.headers, name)


M = TypeVar("M", bound=RequestMessage | ResponseMessage)


@dataclass(frozen=True)
class VerifiedSignature:
    """What a verified signature vouches for; record ``nonce`` under ``key_id``."""

    key_id: str
    nonce: str
    created: datetime
    components: tuple[str, ...]
    label: str = LABEL


class _Fields:
    """Field lines with the mapping methods the library reads and writes."""

    def __init__(self, lines: Headers) -> None:
        self.lines = list(lines)

    def items(self) -> list[tuple[str, str]]:
        return list(self.lines)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self.lines))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _header(tuple(self.lines), name) is not None

    def __setitem__(self, name: str, value: str) -> None:
        del self[name]
        self.lines.append((name, value))

    def __delitem__(self, name: str) -> None:
        self.lines = [(n, v) for n, v in self.lines if n.lower() != name.lower()]


@dataclass
class _RequestView:
    method: str
    url: str
    headers: _Fields


@dataclass
class _ResponseView:
    status_code: int
    headers: _Fields
    request: _RequestView


def _view(message: RequestMessage | ResponseMessage) -> _RequestView | _ResponseView:
    def request(r: RequestMessage) -> _RequestView:
        return _RequestView(r.method, r.url, _Fields(r.headers))

    if isinstance(message, RequestMessage):
        return request(message)
    return _ResponseView(message.status, _Fields(message.headers), request(message.request))


# -- signing --------------------------------------------------------------------------------


def _with_header(message: M, name: str, value: str) -> M:
    kept = tuple((n, v) for n, v in message.headers if n.lower() != name.lower())
    return replace(message, headers=(*kept, (name, value)))


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a naive datetime is ambiguous; pass a timezone-aware one")
    return moment


def sign_message(
    message: M,
    *,
    private_key: Ed25519PrivateKey,
    components: Sequence[str],
    created: datetime,
    keyid: str | None = None,
    nonce: str | None = None,
    tag: str | None = None,
    label: str = LABEL,
    include_alg: bool = True,
) -> M:
    """Return a copy of ``message`` carrying a signature over exactly ``components``.

    The general RFC 9421 operation, public to reproduce the RFC's vectors and to debug
    interoperability; nodes use :func:`sign_request` and :func:`sign_response`. ``keyid``
    defaults to :func:`key_id` of the signing key. Raises ``ValueError`` if a component
    cannot be taken from the message.
    """
    kid = key_id(private_key.public_key()) if keyid is None else keyid
    view = _view(message)
    resolver = MappingKeyResolver(public_keys={}, private_keys={kid: private_key})
    signer = HTTPMessageSigner(signature_algorithm=ED25519, key_resolver=resolver)
    try:
        signer.sign(
            view,
            key_id=kid,
            created=_aware(created),
            nonce=nonce,
            tag=tag,
            label=label,
            include_alg=include_alg,
            covered_component_ids=tuple(components),
            use_existing_digest=message.header("content-digest") is not None,
        )
    except HTTPMessageSignaturesException as exc:
        raise ValueError(f"cannot sign this message: {exc}") from exc
    return replace(message, headers=tuple(view.headers.lines))


def _sign_profile(
    message: M, key: Ed25519PrivateKey, now: datetime, tag: str, components: Sequence[str]
) -> M:
    """Sign under our profile: a fresh 128-bit nonce, and the body always covered.

    Content-Digest is set and covered, and so is content-type when present, so that
    nobody can change the body or how it is read.
    """
    signed = _with_header(message, "Content-Digest", content_digest(message.body))
    if signed.header("content-type") is not None:
        components = (*components, "content-type")
    nonce = secrets.token_urlsafe(16)
    return sign_message(
        signed, private_key=key, components=components, created=now, nonce=nonce, tag=tag
    )


def sign_request(
    message: RequestMessage, *, private_key: Ed25519PrivateKey, now: datetime
) -> RequestMessage:
    """Sign a request to a partner node: sets Content-Digest, Signature-Input, Signature.

    Covers :data:`REQUEST_COMPONENTS` and content-type if present, with ``created=now``, a
    fresh nonce, ``keyid`` (:func:`key_id`), ``alg="ed25519"`` and our tag. Send the
    returned message unchanged (see :func:`to_httpx2_request`).
    """
    return _sign_profile(message, private_key, now, REQUEST_TAG, REQUEST_COMPONENTS)


def _request_label(request: RequestMessage) -> str:
    """The label of the request's one signature, which a response must cover.

    Raises ValueError unless the request carries exactly one signature (one Signature-Input
    member and the same one in Signature): there is nothing else to bind a response to.
    """
    try:
        fields = [
            http_sf.parse((request.header(name) or "").encode("latin-1"), tltype="dictionary")
            for name in ("signature-input", "signature")
        ]
    except ValueError as exc:  # http_sf.StructuredFieldError and encoding errors are ValueErrors
        raise ValueError("cannot sign a response: the request's signature is malformed") from exc
    inputs, values = fields
    if not isinstance(inputs, dict) or not isinstance(values, dict):
        raise ValueError("cannot sign a response: the request's signature is malformed")
    if len(inputs) != 1 or set(inputs) != set(values):
        raise ValueError("cannot sign a response: the request carries no single signature")
    return str(next(iter(inputs)))


def sign_response(
    message: ResponseMessage,
    *,
    private_key: Ed25519PrivateKey,
    now: datetime,
    request_label: str | None = None,
) -> ResponseMessage:
    """Sign a response to a verified request, bound to it with ``;req`` components.

    Covers :func:`response_components` (status, digest, the request's method, target URI
    and its signature labelled ``request_label``: pass :attr:`VerifiedSignature.label`;
    by default the label of the request's only signature) and content-type if present.
    Raises ``ValueError`` if the request carries no such signature: an unsigned request
    has nothing to bind to.
    """
    label = _request_label(message.request) if request_label is None else request_label
    return _sign_profile(message, private_key, now, RESPONSE_TAG, response_components(label))


# -- verification ---------------------------------------------------------------------------


def _identity(component: str) -> tuple[object, frozenset[tuple[str, object]]]:
    """A component's identity: its name and parameters, in any parameter order."""
    text = component if component.startswith('"') else f'"{component}"'
    parsed = http_sf.parse(text.encode("ascii"), tltype="item")
    if not isinstance(parsed, tuple) or not isinstance(parsed[1], dict):
        raise ValueError(f"not a component identifier: {component!r}")
    return parsed[0], frozenset(parsed[1].items())


class _KeyResolver(HTTPSignatureKeyResolver):
    """Calls ``resolve_key`` and keeps its failure: the library would disguise it."""

    def __init__(self, resolve_key: KeyResolver) -> None:
        self.resolve_key = resolve_key
        self.failure: Exception | None = None

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        try:
            key = self.resolve_key(key_id)
            if key is None:
                raise UnknownKeyError("the signing key is not registered, or was revoked")
        except Exception as exc:
            self.failure = exc
            raise
        return key


class _Verifier(HTTPMessageVerifier):
    """The library's verifier, with our clock and profile checked before any key lookup.

    The library reads the wall clock in ``validate_created_and_expires``; this override
    uses the caller's ``now`` and adds the profile checks, which the library runs for each
    signature before resolving its key. The skew tolerates a signer whose clock is ahead
    (``created`` up to ``skew`` in the future); it never lengthens ``max_age``, so a
    signature is accepted for exactly ``max_age`` seconds after its ``created``.
    """

    def __init__(
        self, *, resolver: _KeyResolver, now: datetime, skew: int, tag: str, required: set[str]
    ) -> None:
        super().__init__(signature_algorithm=ED25519, key_resolver=resolver)
        self.max_clock_skew = timedelta(seconds=skew)
        self.now, self.tag, self.required = now, tag, {_identity(c): c for c in required}

    def validate_created_and_expires(
        self, sig_input: InnerList, max_age: timedelta | None = None
    ) -> None:
        params = sig_input.params
        if not sig_input:
            raise MissingComponentError("the signature covers no components")
        for name in REQUIRED_PARAMETERS:
            if name not in params:
                raise MissingComponentError(f'the signature has no "{name}" parameter')
        if params["tag"] != self.tag:
            raise InvalidSignatureError("the signature was made for another purpose")
        covered = {(item.value, frozenset(item.params.items())) for item in sig_input}
        if missing := sorted(name for ident, name in self.required.items() if ident not in covered):
            raise MissingComponentError(f"the signature does not cover {', '.join(missing)}")
        created, expires = params["created"], params.get("expires", None)
        if type(created) is not int or (expires is not None and type(expires) is not int):
            raise InvalidSignatureError("the signature times must be integers")
        now, skew = self.now.timestamp(), self.max_clock_skew.total_seconds()
        if created > now + skew:
            raise StaleSignatureError("the signature was created in the future: check your clock")
        if max_age is None or created + max_age.total_seconds() < now:
            raise StaleSignatureError("the signature is too old: sign each request anew")
        if expires is not None and expires < now:
            raise StaleSignatureError("the signature has expired")


def _verify(
    message: RequestMessage | ResponseMessage,
    tag: str,
    resolve_key: KeyResolver,
    now: datetime,
    max_age: int,
    clock_skew: int,
    required_components: Collection[str],
) -> VerifiedSignature:
    if message.header("signature") is None or message.header("signature-input") is None:
        raise MissingSignatureError("the message is not signed (RFC 9421 signature required)")
    required = {*required_components, "content-digest"}
    if message.header("content-type") is not None:
        required.add("content-type")
    resolver = _KeyResolver(resolve_key)
    verifier = _Verifier(
        resolver=resolver, now=_aware(now), skew=clock_skew, tag=tag, required=required
    )
    try:
        results = verifier.verify(_view(message), max_age=timedelta(seconds=max_age))
    except HTTPMessageSignaturesException as exc:
        if resolver.failure is not None:
            raise resolver.failure from exc
        raise InvalidSignatureError("the signature is malformed or does not verify") from exc
    if len(results) != 1:
        raise InvalidSignatureError("expected exactly one signature")
    covered, params = results[0].covered_components, results[0].parameters
    verify_content_digest(covered['"content-digest"'], message.body)
    return VerifiedSignature(
        key_id=str(params["keyid"]),
        nonce=str(params["nonce"]),
        created=datetime.fromtimestamp(int(params["created"]), UTC),
        components=tuple(c for c in covered if c != '"@signature-params"'),
        label=results[0].label,
    )


def verify_request(
    message: RequestMessage,
    *,
    resolve_key: KeyResolver,
    now: datetime,
    max_age: int = 300,
    clock_skew: int = 5,
    required_components: Collection[str] = REQUEST_COMPONENTS,
) -> VerifiedSignature:
    """Verify a partner's request; return what the signature vouches for, or raise.

    Checks, before any key lookup: one signature, with our tag, covering
    ``required_components`` plus content-digest and (when present) content-type, with
    ``created``, ``keyid`` and ``nonce``; ``created`` at most ``max_age`` seconds before
    ``now`` and at most ``clock_skew`` after (the skew never lengthens ``max_age``). Then the key (``resolve_key`` returns None
    or raises UnknownKeyError for an unknown or revoked key; any other exception it
    raises propagates unchanged: an outage is not a forgery), the signature, and the
    body against its signed Content-Digest. Raises a :class:`SignatureError` subclass.

    Replay is NOT checked here. After this returns, record ``(key_id, nonce)`` in the
    database under a unique constraint, keep it until ``created + max_age`` (when the
    signature goes stale anyway), and reject a nonce seen before. Never record
    a nonce before verification: anyone could then burn a partner's.
    """
    return _verify(message, REQUEST_TAG, resolve_key, now, max_age, clock_skew, required_components)


def verify_response(
    message: ResponseMessage,
    *,
    resolve_key: KeyResolver,
    now: datetime,
    max_age: int = 300,
    clock_skew: int = 5,
    required_components: Collection[str] | None = None,
) -> VerifiedSignature:
    """Verify a node's response to our signed request, as :func:`verify_request` does.

    ``resolve_key`` should know only the key of the node we asked. The default
    components (:func:`response_components` of the label of ``message.request``'s one
    signature) bind the response to that request and its signature, so a response to
    another request (or replayed from an earlier one) fails.
    """
    if required_components is None:
        try:
            required_components = response_components(_request_label(message.request))
        except ValueError as exc:
            raise InvalidSignatureError("our request carries no single signature") from exc
    return _verify(
        message, RESPONSE_TAG, resolve_key, now, max_age, clock_skew, required_components
    )


# -- adapters -------------------------------------------------------------------------------


def _fields(raw: Sequence[tuple[bytes, bytes]]) -> Headers:
    """Field lines decoded as Latin-1, so that every received byte survives (RFC 9110)."""
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)


def request_from_httpx2(request: httpx2.Request) -> RequestMessage:
    """The request httpx2 will send (or has sent), body read into memory."""
    return RequestMessage(
        request.method, str(request.url), _fields(request.headers.raw), request.read()
    )


def to_httpx2_request(message: RequestMessage) -> httpx2.Request:
    """An httpx2 request carrying exactly the method, URL, field lines and body signed."""
    return httpx2.Request(
        message.method, message.url, headers=list(message.headers), content=message.body
    )


async def request_from_starlette(
    request: StarletteRequest, *, public_base_url: str, body: bytes | None = None
) -> RequestMessage:
    """A received request, its URL rebuilt on this node's public base URL.

    The node judges ``@target-uri`` against the address partners know it by, not the Host
    header or a proxy's scheme, so a request signed for one node fails at another. The
    path is the one received, still percent-encoded (Starlette's ``url`` decodes it);
    behind a proxy that strips a prefix, put that prefix in ``public_base_url``. Pass
    ``body`` when the caller already read it (for example under a size limit).
    """
    scope = request.scope
    path = scope.get("raw_path") or quote(scope["path"]).encode()
    query = scope.get("query_string", b"")
    url = public_base_url.rstrip("/") + path.decode("latin-1")
    url += "?" + query.decode("latin-1") if query else ""
    if body is None:
        body = await request.body()
    return RequestMessage(request.method, url, _fields(request.headers.raw), body)

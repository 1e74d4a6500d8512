"""The API's identities: bearer tokens, kept only as SHA-256 hashes in a YAML file.

The tokens file is a YAML list, one entry per token::

    - name: alice              # who: recorded with everything the token writes
      role: operator           # reviewer, operator, auditor, admin or producer
      tenants: [acme, globex]  # the tenants it sees; ["*"] is every tenant
      token_sha256: 3f1c...    # hex SHA-256 of the token; the token itself is nowhere

A token is a random secret (:func:`secrets.token_urlsafe`), shown once when
it is made. Only its hash is stored, so the file, a backup of it or a log
line never holds a usable token. Presented tokens are hashed and compared
with every entry in constant time, and every entry is compared, so neither
the time nor the entry position says how close a guess was.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from eventstore import validate_token
from projections.review import Actor
from riskpipe.api._roles import ApiRole, Permission, allows
from riskpipe.errors import RiskpipeError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "ALL_TENANTS",
    "Principal",
    "TokenEntry",
    "TokenTable",
    "TokensFileError",
    "add_token",
    "hash_token",
    "load_tokens",
]

ALL_TENANTS = "*"
"""In a token's ``tenants``: every tenant, those to come included. Alone, or not at all."""
_TOKEN_BYTES = 32
"""Random bytes in a new token (43 URL-safe characters)."""

Name = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]
"""A token's name: printable ASCII, no whitespace (a case event's ``Actor`` name)."""


class TokensFileError(RiskpipeError):
    """The tokens file cannot be used: missing, unreadable, malformed, or an entry invalid."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"tokens file {path}: {reason}")


class TokenEntry(BaseModel):
    """One token of the tokens file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    role: ApiRole
    tenants: tuple[str, ...] = Field(min_length=1)
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Lower-case hex SHA-256 of the token."""

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Tenant tokens, no repeats; ``"*"`` stands alone."""
        if ALL_TENANTS in value:
            if len(value) > 1:
                raise ValueError('"*" (every tenant) cannot be listed with other tenants')
            return value
        for tenant in value:
            validate_token(tenant, what="tenant")
        if len(set(value)) != len(value):
            raise ValueError("a tenant is listed twice")
        return value


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a token's name, role and tenants."""

    name: str
    role: ApiRole
    tenants: frozenset[str] | None
    """``None``: every tenant (``"*"``)."""

    @property
    def all_tenants(self) -> bool:
        """Whether the token sees every tenant."""
        return self.tenants is None

    def sees(self, tenant: str) -> bool:
        """Whether ``tenant``'s objects exist for this token."""
        return self.tenants is None or tenant in self.tenants

    def may(self, permission: Permission) -> bool:
        """Whether the token's role holds ``permission``."""
        return allows(self.role, permission)

    @property
    def actor(self) -> str:
        """Who did it, as the audit trail records an API write: ``name (role)``."""
        return f"{self.name} ({self.role})"

    def review_actor(self) -> Actor:
        """Who did it, as a case event records it (``by``).

        Raises:
            ValueError: the token is a producer's, which never acts on a case.
        """
        role = self.role
        if role == "producer":  # the roles table gives producers no case permission
            raise ValueError("a producer token does not act on cases")
        return Actor(name=self.name, role=role)


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``, as the tokens file stores it."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class TokenTable:
    """The tokens the API accepts, loaded once at start."""

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self.entries = tuple(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def authenticate(self, token: str) -> Principal | None:
        """The principal ``token`` is, or ``None``: every entry is compared, in constant time."""
        presented = hash_token(token).encode()
        found: TokenEntry | None = None
        for entry in self.entries:
            if hmac.compare_digest(presented, entry.token_sha256.encode()):
                found = entry
        if found is None:
            return None
        tenants = None if ALL_TENANTS in found.tenants else frozenset(found.tenants)
        return Principal(name=found.name, role=found.role, tenants=tenants)


def _parse(path: Path, text: str) -> list[TokenEntry]:
    """The entries of a tokens file's text.

    Raises:
        TokensFileError: not YAML, not a list, an invalid entry, or a name or hash twice.
    """
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TokensFileError(path, f"not valid YAML{where}") from None
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise TokensFileError(path, "must be a YAML list of {name, role, tenants, token_sha256}")
    entries: list[TokenEntry] = []
    names: set[str] = set()
    hashes: set[str] = set()
    for index, item in enumerate(doc, start=1):
        label = _label(index, item)
        try:
            entry = TokenEntry.model_validate(item)
        except ValidationError as exc:
            raise TokensFileError(path, f"{label}: {_reasons(exc)}") from None
        if entry.name in names:
            raise TokensFileError(path, f"{label}: the name {entry.name!r} is used twice")
        if entry.token_sha256 in hashes:
            raise TokensFileError(path, f"{label}: the same token hash is listed twice")
        names.add(entry.name)
        hashes.add(entry.token_sha256)
        entries.append(entry)
    return entries


def _label(index: int, item: object) -> str:
    """``entry 3 (name 'bob')``: where the problem is, by position and, if it has one, name."""
    name = item.get("name") if isinstance(item, dict) else None
    return f"entry {index}" + (f" (name {name!r})" if isinstance(name, str) else "")


def _reasons(exc: ValidationError) -> str:
    """A validation error as one line, without the input (it could be a pasted token)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "entry"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def load_tokens(path: Path) -> TokenTable:
    """The tokens of ``path``.

    Raises:
        TokensFileError: the file is missing, unreadable or malformed, or holds no token.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokensFileError(
            path, "not found (make a token with `riskpipe api add-token`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokensFileError(path, f"cannot be read: {exc}") from None
    entries = _parse(path, text)
    if not entries:
        raise TokensFileError(path, "holds no token (add one with `riskpipe api add-token`)")
    return TokenTable(entries)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path``: two ``add-token`` at once do not lose one."""
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_token(path: Path, name: str, role: ApiRole, tenants: Iterable[str]) -> str:
    """Make a token for ``name``, store its hash in ``path``, and return the token.

    The file is created if missing; existing entries, and their comments, are
    kept as written. It is replaced atomically (a reader sees the old file or
    the new one, never half of one), with mode 0600.

    Raises:
        TokensFileError: the existing file is malformed, or already has ``name``.
        ValueError: the name, role or a tenant is invalid.
    """
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    try:
        entry = TokenEntry(
            name=name, role=role, tenants=tuple(tenants), token_sha256=hash_token(token)
        )
    except ValidationError as exc:
        raise ValueError(_reasons(exc)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        existing = _parse(path, text)
        if any(e.name == name for e in existing):
            raise TokensFileError(path, f"a token named {name!r} exists already")
        _write_atomically(path, _appended(path, text, existing, entry))
    return token


def _appended(path: Path, text: str, existing: list[TokenEntry], entry: TokenEntry) -> str:
    """``text`` with ``entry`` added at its end; re-written whole if it is not a block list."""
    block = yaml.safe_dump([entry.model_dump(mode="json")], sort_keys=False, width=1000)
    if text.strip() == "":
        return block
    added = text + ("" if text.endswith("\n") else "\n") + block
    with contextlib.suppress(TokensFileError):
        if _parse(path, added) == [*existing, entry]:
            return added
    dump = [e.model_dump(mode="json") for e in (*existing, entry)]
    return yaml.safe_dump(dump, sort_keys=False, width=1000)


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text``: a new file (mode 0600), synced, renamed over the old."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(temporary).unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

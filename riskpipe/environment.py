"""Checks of the ``RISKPIPE_*`` environment: misspelt names and invalid values, in one line.

pydantic-settings ignores a variable it does not know, so ``RISKPIPE_NATS_ULR``
would leave the default URL in force without a word. Every ``RISKPIPE_*``
variable is therefore compared with the names riskpipe reads: the fields of
:class:`~riskpipe.settings.Settings` (so a new setting is known as soon as it
exists) and the few variables read elsewhere (:data:`OTHER_VARIABLES`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import AliasChoices

from riskpipe.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from pydantic import ValidationError

__all__ = [
    "OTHER_VARIABLES",
    "PREFIX",
    "UnknownVariable",
    "describe_invalid",
    "known_variables",
    "unknown_variables",
]

PREFIX = "RISKPIPE_"
OTHER_VARIABLES: Mapping[str, str] = {
    "RISKPIPE_ACTOR": "who a DLQ replay or purge is recorded as (riskpipe dlq)",
    "RISKPIPE_NATS_USER": "deploy/k8s composes RISKPIPE_NATS_URL from it",
    "RISKPIPE_NATS_PASSWORD": "deploy/k8s composes RISKPIPE_NATS_URL from it",
    "RISKPIPE_REQUIRE_TOOLS": "the test suite: a missing external tool fails instead of skipping",
    "RISKPIPE_CONSOLE_SCREENSHOTS": "the test suite: where the console's browser tests save pages",
    "RISKPIPE_TO_NATS_PASSWORD": "riskpipe migrate: the password of the target store (--to)",
    "RISKPIPE_TO_NATS_TOKEN": "riskpipe migrate: the token of the target store (--to)",
}
"""Variables riskpipe (or its deployment and tests) reads outside :class:`Settings`, and why."""

TYPO_CUTOFF = 0.8
"""Similarity from which an unknown name is taken for a misspelling of a known one."""
HINT_CUTOFF = 0.6
"""Similarity from which an unknown name's warning still suggests a known one."""


@dataclass(frozen=True)
class UnknownVariable:
    """A ``RISKPIPE_*`` variable riskpipe does not read, and the known name closest to it."""

    name: str
    suggestion: str | None
    misspelt: bool
    """The name is so close to a known one that it is surely meant as that one."""

    def describe(self) -> str:
        """One line: the name, and the suggestion if any."""
        hint = f" (did you mean {self.suggestion}?)" if self.suggestion else ""
        return f"unknown environment variable {self.name}{hint}"


def known_variables() -> frozenset[str]:
    """Every ``RISKPIPE_*`` name riskpipe reads, upper case."""
    names = set(OTHER_VARIABLES)
    for field_name, field in Settings.model_fields.items():
        aliases = [field.alias, field.validation_alias]
        explicit = [a for a in aliases if isinstance(a, str)] + [
            choice
            for a in aliases
            if isinstance(a, AliasChoices)
            for choice in a.choices
            if isinstance(choice, str)
        ]
        names.update(n.upper() for n in explicit or [PREFIX + field_name])
    return frozenset(n.upper() for n in names)


def unknown_variables(environ: Mapping[str, str]) -> list[UnknownVariable]:
    """The ``RISKPIPE_*`` names in ``environ`` that riskpipe does not read, sorted.

    Names are compared without regard to case, as pydantic-settings reads them.
    """
    known = known_variables()
    unknown = sorted(
        name for name in environ if name.upper().startswith(PREFIX) and name.upper() not in known
    )
    return [_classify(name, known) for name in unknown]


def _classify(name: str, known: frozenset[str]) -> UnknownVariable:
    # compare without the shared prefix: it would make every pair look alike
    tails = {k.removeprefix(PREFIX): k for k in known if k.startswith(PREFIX)}
    tail = name.upper().removeprefix(PREFIX)
    close = difflib.get_close_matches(tail, list(tails), n=1, cutoff=HINT_CUTOFF)
    if not close:
        return UnknownVariable(name, None, misspelt=False)
    ratio = difflib.SequenceMatcher(None, tail, close[0]).ratio()
    return UnknownVariable(name, tails[close[0]], misspelt=ratio >= TYPO_CUTOFF)


def describe_invalid(exc: ValidationError, flags: Collection[str] = ()) -> list[str]:
    """One short problem per invalid setting, named as the user set it.

    A field is named by its environment variable, and by its flag too when it
    is in ``flags``. Values are left out: they may be secrets.
    """
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"{PREFIX}{field.upper()}"
        if field in flags:  # a flag's value may come from the variable too (click's envvar)
            name += f" or --{field.replace('_', '-')}"
        problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return problems

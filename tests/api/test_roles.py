"""The roles table: what each role may do, and that its names are the case events' roles."""

from __future__ import annotations

from typing import get_args

import pytest

from projections.review import Role
from riskpipe.api import PERMISSIONS, ROLES, Permission, Principal, TokenTable, hash_token
from riskpipe.api._tokens import TokenEntry


def test_every_role_that_acts_on_cases_is_a_role_of_the_case_events() -> None:
    """A token's name and role become a case event's ``by`` as they are; a producer's never do."""
    acting = {role for role in ROLES if Permission.CASES_WRITE in PERMISSIONS[role]}
    people = set(ROLES) - {"producer"}
    assert acting <= people <= set(get_args(Role))
    assert "system" not in ROLES
    principal = Principal(name="rita", role="reviewer", tenants=frozenset({"acme"}))
    assert principal.review_actor().model_dump() == {"name": "rita", "role": "reviewer"}
    service = Principal(name="idp", role="producer", tenants=frozenset({"acme"}))
    with pytest.raises(ValueError, match="producer"):
        service.review_actor()


def test_the_table_says_what_the_docs_say() -> None:
    """Auditors read, never write; admins hold all but evidence:write, producers only that."""
    reads = {p for p in Permission if p.value.endswith(":read")}
    assert PERMISSIONS["auditor"] == reads
    assert PERMISSIONS["admin"] == set(Permission) - {Permission.EVIDENCE_WRITE}
    assert PERMISSIONS["producer"] == {Permission.EVIDENCE_WRITE}
    assert PERMISSIONS["reviewer"] == {Permission.CASES_READ, Permission.CASES_WRITE}
    assert PERMISSIONS["operator"] == {
        Permission.STATUS_READ,
        Permission.DEAD_LETTERS_READ,
        Permission.DEAD_LETTERS_WRITE,
    }


@pytest.mark.parametrize(
    ("tenants", "sees_acme", "sees_globex"),
    [(("acme",), True, False), (("*",), True, True), (("globex", "initech"), False, True)],
)
def test_a_token_sees_its_tenants_only(
    tenants: tuple[str, ...],
    sees_acme: bool,  # noqa: FBT001
    sees_globex: bool,  # noqa: FBT001
) -> None:
    """``"*"`` is every tenant; any other list is exactly those tenants."""
    entry = TokenEntry(name="t", role="admin", tenants=tenants, token_sha256=hash_token("s"))
    principal = TokenTable([entry]).authenticate("s")
    assert principal is not None
    assert (principal.sees("acme"), principal.sees("globex")) == (sees_acme, sees_globex)
    assert principal.all_tenants == (tenants == ("*",))

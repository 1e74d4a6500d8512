"""``riskpipe asyncapi``: a valid AsyncAPI 3.0 document, true to the streams and the schemas."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
import yaml
from support.cli import riskpipe
from support.tools import require_tool

from riskpipe.asyncapi import CHANNELS, asyncapi_document
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from eventstore import EventStore

SPECS = "@asyncapi/specs@6.11.1"  # the AsyncAPI Initiative's own JSON Schemas of the spec


@pytest.fixture(scope="session")
def asyncapi_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The official JSON Schema of AsyncAPI 3.0.0, from the npm registry."""
    npm = require_tool("npm")
    folder = tmp_path_factory.mktemp("asyncapi-specs")
    packed = subprocess.run(
        [npm, "pack", SPECS, "--pack-destination", str(folder), "--silent"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    with tarfile.open(folder / packed.stdout.strip().splitlines()[-1]) as archive:
        member = archive.extractfile("package/schemas/3.0.0-without-$id.json")
        assert member is not None
        schema: dict[str, Any] = json.load(member)
    return schema


def document() -> dict[str, Any]:
    """The document for the default names."""
    return asyncapi_document(build_schemas(), topology_config())


def test_the_document_is_valid_asyncapi_3(asyncapi_schema: dict[str, Any]) -> None:
    """The spec's own schema accepts the document; a broken copy is refused, so the check bites."""
    validator = jsonschema.Draft7Validator(asyncapi_schema)
    errors = [e.message for e in validator.iter_errors(document())]
    assert errors == []
    broken = document()
    broken["operations"]["risk.send"]["action"] = "publish"  # AsyncAPI 2's word
    assert not validator.is_valid(broken)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_inside_the_document() -> None:
    """Each ``$ref`` names a part of the document itself (no dangling ``#/$defs``)."""
    doc = document()
    refs = _refs(doc)
    assert refs
    for ref in refs:
        node: Any = doc
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            node = node[part]


def test_every_event_type_is_on_a_channel_with_the_schema_that_publish_uses() -> None:
    """Each registered type is a channel's message, with the schema ``riskpipe schema`` gives."""
    schemas = build_schemas()
    messages = document()["components"]["messages"]
    on_channels = {name for channel in CHANNELS for name in channel.messages}
    assert on_channels == set(schemas.names())
    by_name = {m["name"]: m for m in messages.values()}
    for version in ("v1", "v2"):
        name = f"riskpipe.evidence.recorded.{version}"
        evidence = by_name[name]["payload"]
        expected = schemas.event_json_schema(name)
        assert evidence["properties"]["data"]["properties"].keys() == (
            expected["properties"]["data"]["properties"].keys()
        )
        assert evidence["required"] == expected["required"]
    v2 = by_name["riskpipe.evidence.recorded.v2"]["payload"]["properties"]["data"]["properties"]
    assert "impact" in v2


async def test_every_channel_is_stored_by_its_provisioned_stream(store: EventStore) -> None:
    """Each channel's address, parameters filled in, lies in the subjects of the stream it names."""
    for channel in CHANNELS:
        stream = store.config.stream_for(channel.category)
        info = await store.client.stream_info(stream)  # as the server holds it
        assert info is not None, stream
        subjects = info["config"]["subjects"]
        address = f"rp.{channel.address}"
        concrete = re.sub(r"\{(\w+)\}", lambda m: "17" if "Sequence" in m[1] else "t1", address)
        assert any(_matches(pattern, concrete) for pattern in subjects), (channel.key, subjects)


def _matches(pattern: str, subject: str) -> bool:
    pat, sub = pattern.split("."), subject.split(".")
    for index, part in enumerate(pat):
        if part == ">":
            return len(sub) > index
        if index >= len(sub) or part not in {"*", sub[index]}:
            return False
    return len(pat) == len(sub)


def test_the_roles_match_the_permissions() -> None:
    """The producer sends evidence and outcomes only; the auditor sends nothing."""
    operations = document()["operations"]
    senders = {
        key.removesuffix(".send"): op["x-riskpipe-roles"]
        for key, op in operations.items()
        if op["action"] == "send"
    }
    assert [channel for channel, roles in senders.items() if "producer" in roles] == [
        "evidence",
        "outcomes",
    ]
    assert not [channel for channel, roles in senders.items() if "auditor" in roles]
    assert "worker" in senders["risk"]


def test_the_command_prints_yaml_or_json_of_the_same_document() -> None:
    """``riskpipe asyncapi`` prints YAML, ``--json`` the same document as JSON, with the prefix."""
    as_yaml = riskpipe("asyncapi", env={"RISKPIPE_SUBJECT_PREFIX": "acme"})
    as_json = riskpipe("--log-level", "error", "asyncapi", "--json")
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert as_json.returncode == 0, as_json.stderr
    from_yaml = yaml.safe_load(as_yaml.stdout)
    assert from_yaml["channels"]["evidence"]["address"] == "acme.evidence.{tenant}.{entity}"
    assert json.loads(as_json.stdout)["channels"]["evidence"]["address"] == (
        "rp.evidence.{tenant}.{entity}"
    )
    assert from_yaml["components"] == json.loads(as_json.stdout)["components"]

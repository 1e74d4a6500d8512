"""The three cluster configs in deploy/nats/cluster form a JetStream cluster with R3 streams."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import nats.js.errors
import pytest
from nats_sessions import inbox_prefix

from riskpipe.server import NatsServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.api import StreamInfo
    from nats.js.client import JetStreamContext

NATS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "nats"
NODES = (1, 2, 3)
_ROUTE = re.compile(r"nats-route://nats-(\d):6222")
# Published in the system account once the JetStream meta group has a leader;
# until then the cluster drops JetStream API requests.
_META_LEADER_ELECTED = "$JS.EVENT.ADVISORY.DOMAIN.LEADER_ELECTED"
_PEER_OFFLINE = 10005  # "no suitable peers for placement": a node has not joined yet


def reserve_ports(count: int) -> list[int]:
    """Distinct free loopback ports for the route listeners.

    Routes must name each other's ports before any node starts, so ``-1`` cannot
    be used here. The sockets are held together, then released just before the
    servers bind; a port taken in that instant makes the cluster fail to form,
    loudly.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def loopback_config(node: int, route_ports: list[int], into: Path) -> Path:
    """A copy of ``cluster/n<node>.conf`` routed over 127.0.0.1 instead of ``nats-<n>``.

    ``NatsServer`` gives the client port (``-p -1``) and the store (``-sd``), so
    the copy also drops the container's store path and monitoring port.
    """
    text = (NATS_DIR / "cluster" / f"n{node}.conf").read_text()
    assert "listen: 0.0.0.0:6222" in text
    text = text.replace("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{route_ports[node - 1]}")
    text = _ROUTE.sub(lambda m: f"nats-route://127.0.0.1:{route_ports[int(m[1]) - 1]}", text)
    text = re.sub(r"^\s*(store_dir|http_port):.*$", "", text, flags=re.MULTILINE)
    path = into / "cluster" / f"n{node}.conf"
    path.write_text(text)
    return path


@pytest.fixture
def nodes(tmp_path: Path, nats_passwords: dict[str, str]) -> Iterator[list[NatsServer]]:
    """Three servers configured from loopback copies of the cluster configs, not yet started."""
    del nats_passwords  # needed for the environment variables it exports
    into = tmp_path / "conf"
    (into / "cluster").mkdir(parents=True)
    shutil.copy(NATS_DIR / "auth.conf", into / "auth.conf")  # included as ../auth.conf
    ports = reserve_ports(len(NODES))
    servers = [
        NatsServer(data_dir=tmp_path / f"store-{n}", config_file=loopback_config(n, ports, into))
        for n in NODES
    ]
    yield servers
    for server in servers:
        server.kill()


class Clients:
    """Connections opened by a test, closed after it."""

    def __init__(self, passwords: dict[str, str]) -> None:
        self.passwords = passwords
        self.opened: list[Client] = []

    async def open(self, server: NatsServer, user: str) -> Client:
        """Connect to one node as ``user``."""
        async with asyncio.timeout(5):
            nc = await nats.connect(
                server.url,
                user=user,
                password=self.passwords[user],
                inbox_prefix=inbox_prefix(user),
            )
        self.opened.append(nc)
        return nc


@pytest.fixture
async def clients(nats_passwords: dict[str, str]) -> AsyncIterator[Clients]:
    """Opens connections for the test and closes them afterwards."""
    opened = Clients(nats_passwords)
    yield opened
    for nc in opened.opened:
        await nc.close()


async def start_cluster(nodes: list[NatsServer], clients: Clients) -> None:
    """Start the nodes and return once the JetStream meta group has elected a leader."""
    nodes[0].start()
    system = await clients.open(nodes[0], "sys")
    elected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_election(_msg: Msg) -> None:
        if not elected.done():
            elected.set_result(None)

    # Subscribed before the other nodes exist, so the election cannot be missed.
    await system.subscribe(_META_LEADER_ELECTED, cb=on_election)
    await system.flush()
    for node in nodes[1:]:
        node.start()
    async with asyncio.timeout(15):
        await elected


def test_cluster_configs_name_each_node_and_route_to_all() -> None:
    """Each node has its own name and store directory and routes to all three nodes."""
    for node in NODES:
        text = (NATS_DIR / "cluster" / f"n{node}.conf").read_text()
        assert f"server_name: nats-{node}" in text
        assert f'store_dir: "/data/jetstream/nats-{node}"' in text
        assert sorted(int(n) for n in _ROUTE.findall(text)) == list(NODES)
        assert "include ../auth.conf" in text


async def add_r3_stream(admin: JetStreamContext) -> StreamInfo:
    """Create EVIDENCE with three replicas once all three nodes have joined the meta group.

    Two nodes can elect the meta leader before the third has joined, and no event
    announces the join; the placement answer itself says when to ask again.
    """
    async with asyncio.timeout(15):
        while True:
            try:
                return await admin.add_stream(
                    name="EVIDENCE", subjects=["rp.evidence.>"], num_replicas=3
                )
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _PEER_OFFLINE:
                    raise
            await asyncio.sleep(0.05)


async def test_cluster_replicates_an_r3_stream(nodes: list[NatsServer], clients: Clients) -> None:
    """An R3 stream created on node 1 stores a publish and serves it back from node 3."""
    await start_cluster(nodes, clients)
    admin = (await clients.open(nodes[0], "admin")).jetstream(timeout=5)
    info = await add_r3_stream(admin)
    assert info.cluster is not None
    assert len(info.cluster.replicas or []) == 2  # two followers besides the leader
    producer = (await clients.open(nodes[1], "producer")).jetstream(timeout=5)
    ack = await producer.publish("rp.evidence.t1.e1", b"replicated")
    auditor = (await clients.open(nodes[2], "auditor")).jetstream(timeout=5)
    assert (await auditor.get_msg("EVIDENCE", seq=ack.seq)).data == b"replicated"

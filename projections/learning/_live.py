"""The config live at each evidence position, as a running worker follows promotions.

A promotion's ``effective_from`` is one past the evidence stream's last
sequence as read after its ``promotion_started`` event was appended, so every
evidence message stored after that event may be at or beyond it. A worker
that reads the config log *after* fetching a batch therefore knows every
promotion that can apply to that batch, or that one is under way (then it
waits, see below):
:meth:`LiveConfigs.refresh` is called once per fetched batch, and asks the
config stream's leader for the sequence of its last message (one small
request); only when that moved past the book's version are the new events
read, from the leader too (a replica may be behind).

Per message, :meth:`LiveConfigs.at` is a comparison with the latest
promotion's ``effective_from`` and its cached config; earlier positions (a
redelivery, an entity catching up) look the promotion up by bisection.

A promotion is two events, ``promotion_started`` then ``promoted``: while
the book holds the first without the second, :meth:`LiveConfigs.at` raises
for every position, and the worker holds what it fetched for a moment (the
promotion is reading the evidence stream's last sequence, which may fall on
either side of that evidence).

A promoted config this build cannot load (written for another analyzer
version) is never skipped: :meth:`LiveConfigs.at` raises
:class:`~projections.errors.ConfigUnavailableError` for every position it
covers, and the risk projection holds those messages (nothing committed,
nothing acked) until a build that loads it runs, or the positions are
covered by a later promotion. So is a config log that could not be read.
"""

from __future__ import annotations

import asyncio
import bisect
from typing import TYPE_CHECKING

import structlog
from pydantic import ValidationError

from analyzers import ANALYZER_VERSION
from eventstore.errors import EventStoreError
from projections.errors import ConfigUnavailableError
from projections.learning._book import ConfigBook, ConfigBookError
from projections.learning._events import CONFIG_SUBJECT, CONFIGS_STREAM

if TYPE_CHECKING:
    from analyzers import AnalyzerConfig
    from eventstore import EventStore
    from projections.learning._book import Promotion
    from projections.risk import RiskMetrics

__all__ = ["LiveConfigs", "load_promoted", "load_version"]

_log = structlog.get_logger(__name__)
_NEVER = 1 << 62
"""An ``effective_from`` no evidence reaches."""
_PENDING_RETRY = 0.05
"""How soon a worker holding evidence for a promotion under way looks again (seconds)."""


def load_version(
    book: ConfigBook, version: str, fingerprint: str | None = None
) -> AnalyzerConfig | str:
    """Proposed ``version``'s config, validated by this build; else why it cannot be loaded.

    With ``fingerprint``, the config must have it (as its promotion recorded).
    """
    try:
        proposal = book.proposal(version)
        config = proposal.config()
    except ConfigBookError as exc:
        return str(exc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        return (
            f"config version {version!r} (for analyzer {proposal.data.analyzer_version})"
            f" cannot be loaded by this build (analyzer {ANALYZER_VERSION}): {problems}"
        )
    if fingerprint is not None and config.fingerprint() != fingerprint:
        return (
            f"config version {version!r} loads with fingerprint {config.fingerprint()[:12]},"
            f" but was promoted as {fingerprint[:12]}"
        )
    return config


def load_promoted(book: ConfigBook, promotion: Promotion) -> AnalyzerConfig | str:
    """The config ``promotion`` made live, validated by this build; else why it cannot be."""
    return load_version(book, promotion.version, promotion.data.fingerprint)


class LiveConfigs:
    """Which config scores each evidence position: the one promoted for it in the log.

    Implements the risk projection's ``ConfigSelection``: before the first
    promotion's ``effective_from`` it chooses none, and the projection's own
    config scores.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        metrics: RiskMetrics | None = None,
        retry_in: float = 5.0,
    ) -> None:
        self.store = store
        self.book = ConfigBook()
        self._metrics = metrics
        self._retry_in = retry_in
        self._stream = store.config.stream_for(CONFIGS_STREAM.category)
        self._subject = store.config.subject(CONFIGS_STREAM.category, *CONFIG_SUBJECT)
        self._loaded: dict[str, AnalyzerConfig | str] = {}
        self._starts: list[int] = []  # each promotion's effective_from, in order
        self._configs: list[AnalyzerConfig | str] = []  # each promotion's config (or problem)
        self._from = _NEVER  # the latest promotion's effective_from
        self._current: AnalyzerConfig | str | None = None  # its config (or why it cannot load)
        self._stale: str | None = "the config log was not read yet"
        self._lock = asyncio.Lock()
        self._looks = 0  # looks begun: a caller whose call one began after need not look again

    def at(self, sequence: int) -> AnalyzerConfig | None:
        """The config promoted for the evidence at ``sequence`` (``None``: before any).

        Raises:
            ConfigUnavailableError: the config log could not be read, or the
                config live there cannot be loaded by this build.
        """
        if self._stale is not None:
            raise ConfigUnavailableError(self._stale, retry_in=self._retry_in)
        if (pending := self.book.pending) is not None:
            raise ConfigUnavailableError(
                f"a {pending.kind} of config version {pending.version!r} is under way; evidence"
                " waits until it is recorded (if it never is, the promoting process died:"
                f" run riskpipe config promote {pending.version} again)",
                retry_in=_PENDING_RETRY,
            )
        found = self._current if sequence >= self._from else self._before(sequence)
        if isinstance(found, str):
            raise ConfigUnavailableError(
                f"evidence {sequence}: {found}; deploy a build that loads it (or, for later"
                " evidence, promote a version this build loads: riskpipe config rollback)",
                retry_in=self._retry_in,
            )
        return found

    def _before(self, sequence: int) -> AnalyzerConfig | str | None:
        index = bisect.bisect_right(self._starts, sequence) - 1
        return None if index < 0 else self._configs[index]

    @property
    def live(self) -> Promotion | None:
        """The latest promotion seen (``None``: none, the worker's own config scores)."""
        return self.book.live

    async def refresh(self) -> None:
        """Read promotions appended since the last look; never raises.

        Calls made while a look is under way share the next one: every
        partition's runner asks before its batch, and they would otherwise
        queue one leader round trip behind another.

        A failure marks the configs unknown (every :meth:`at` raises) until a
        refresh succeeds: scoring with a config that may no longer be live
        would break the log's word.
        """
        before = self._looks
        async with self._lock:
            if self._looks > before:
                # a look began after this call did, and has ended: it saw everything
                # appended before this call (each partition's batch asks at once)
                return
            self._looks += 1
            try:
                last = await self.store.client.leader_last_sequence(self._stream, self._subject)
                if last is not None and last > self.book.version:
                    await self._read_until(last)
            except (EventStoreError, ValidationError) as exc:
                reason = f"cannot read the config log ({self._stream}): {exc}"
                if self._stale is None:
                    _log.warning("analyzer.config_log_unreadable", error=str(exc))
                self._stale = reason
                return
            self._stale = None

    async def _read_until(self, last: int) -> None:
        seen = len(self.book.promotions)
        while self.book.version < last:
            raw = await self.store.client.leader_get(
                self._stream, self.book.version + 1, next_by_subject=self._subject
            )
            if raw is None or raw.seq > last:
                raise _BehindError(last, self.book.version)
            self.book.apply_recorded(self.store.recorded(raw))
        if (pending := self.book.pending) is not None:
            _log.info(
                "analyzer.config_promotion_pending", version=pending.version, kind=pending.kind
            )
        for promotion in self.book.promotions[seen:]:
            self._add(promotion, announce=promotion is self.book.promotions[-1])

    def _add(self, promotion: Promotion, *, announce: bool) -> None:
        version = promotion.version
        if (config := self._loaded.get(version)) is None:
            config = self._loaded[version] = load_promoted(self.book, promotion)
        self._starts.append(promotion.effective_from)
        self._configs.append(config)
        self._from, self._current = promotion.effective_from, config
        if not announce:
            return
        fields = {
            "version": version,
            "fingerprint": promotion.data.fingerprint,
            "effective_from": promotion.effective_from,
            "kind": promotion.data.kind,
        }
        if isinstance(config, str):
            _log.error("analyzer.config_unloadable", error=config, **fields)
            return
        _log.info("analyzer.config_switched", **fields)
        if self._metrics is not None:
            self._metrics.analyzer.info(
                {"version": config.analyzer_version, "config_fingerprint": config.fingerprint()}
            )


class _BehindError(EventStoreError):
    """The config event the leader called the last one could not be read (yet)."""

    def __init__(self, last: int, have: int) -> None:
        super().__init__(f"config event {last} not readable yet (read up to {have})")

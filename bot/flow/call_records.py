"""Every model call recorded: usage and cost in the store, latency and outcome in the
metrics; a failed call keeps its turn for "try again"."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.core.failures import FailureKind
from bot.core.store import Store
from bot.core.threads import Turn
from bot.core.work import Work
from bot.kit import metrics
from bot.kit.formatting import usd
from bot.models.base import ModelError, Usage
from bot.models.pricing import PriceTable

log = logging.getLogger(__name__)


@dataclass
class CallRecord:
    """One model call as it is recorded: whose, which model, and how long it took."""

    work: Work
    user_turn: Turn
    model: str
    image_size: str | None
    request_bytes: int
    seconds: float = 0.0


class CallLedger:
    """Writes :class:`CallRecord` s; ``clock`` is "now" in epoch seconds (tests move it)."""

    def __init__(self, store: Store, prices: PriceTable, clock: Callable[[], float]) -> None:
        self.store = store
        self.prices = prices
        self.clock = clock

    async def record(self, call: CallRecord, usage: Usage | None, *, images: int,
                     failure: FailureKind | None, turn_id: int | None = None) -> None:
        """The call's usage, cost and latency, in the store and in the metrics."""
        usage = usage or Usage()
        cost = self.prices.cost(call.model, usage, images=images, image_size=call.image_size)
        outcome = "ok" if failure is None else failure.value
        metrics.MODEL_SECONDS.labels(call.model).observe(call.seconds)
        metrics.MODEL_CALLS.labels(call.model, outcome).inc()
        metrics.MODEL_COST.labels(call.model).inc(usd(cost))
        metrics.CALL_COST.labels(call.model).observe(usd(cost))
        incoming = call.work.event
        await self.store.record_usage(
            chat=incoming.chat, user_id=incoming.sender.id,
            thread_id=call.user_turn.thread_id, model=call.model, ok=failure is None,
            images=images, prompt_tokens=usage.prompt_tokens,
            output_tokens=usage.output_tokens, request_bytes=call.request_bytes,
            cost_micros=cost, latency_ms=round(call.seconds * 1000),
            failure=failure, at=self.clock(),
            event_id=call.work.entry.id, turn_id=turn_id,
        )

    async def record_failure(self, call: CallRecord, error: ModelError) -> None:
        """Keep the turn for "try again" (out of context) and count the failed call."""
        user_turn = call.user_turn
        log.warning("model call failed in thread %s: %s (%s)", user_turn.thread_id,
                    error.kind.value, error.detail or error.user_message)
        await self.store.mark_failed(user_turn.id, error.kind.value)
        await self.record(call, error.usage, images=0, failure=error.kind)

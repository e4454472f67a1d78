"""Prometheus metrics (prometheus-client): what an operator watches on a running bot.

Served at ``/metrics`` by ``chatbrush web``, or on ``CHATBRUSH_METRICS_PORT`` by
``chatbrush run``. Labels stay low-cardinality (platform, model, outcome): never a chat
or user id.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

MESSAGES = Counter(
    "chatbrush_messages_total", "Messages handled, by platform and kind (edit or command)",
    ["platform", "kind"],
)
MODEL_CALLS = Counter(
    "chatbrush_model_calls_total", "Model calls by outcome (ok or a failure kind)",
    ["model", "outcome"],
)
MODEL_SECONDS = Histogram(
    "chatbrush_model_call_seconds", "Time one model call took, retries included", ["model"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
MODEL_COST = Counter(
    "chatbrush_model_cost_usd_total", "Money spent on model calls, in US dollars (from the "
    "price table and each answer's usage)", ["model"],
)
CALL_COST = Histogram(
    "chatbrush_model_call_cost_usd", "What one model call cost, in US dollars", ["model"],
    buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2),
)
LIMIT_REFUSALS = Counter(
    "chatbrush_limit_refusals_total", "Requests refused by a budget or rate limit, before "
    "any model call", ["limit"],
)
CALLS_QUEUED = Counter(
    "chatbrush_calls_queued_total", "Model calls that waited for a free slot "
    "(CHATBRUSH_MAX_CONCURRENT_CALLS)",
)
REQUEST_BYTES = Histogram(
    "chatbrush_request_bytes", "Inline payload of one model request (context policy output)",
    buckets=(1e4, 1e5, 5e5, 1e6, 2e6, 4e6, 8e6, 16e6),
)
IMAGES_OUT = Counter("chatbrush_images_sent_total", "Edited images delivered", ["platform"])
UNDELIVERED = Counter(
    "chatbrush_undelivered_total", "Answers stored but not delivered after every retry "
    "(kept for a resend)", ["platform"],
)
QUEUED = Counter(
    "chatbrush_queued_total", "Messages that waited behind another of the same thread",
    ["platform"],
)
REJECTED_INPUTS = Counter(
    "chatbrush_rejected_inputs_total", "Messages refused before a model call (bad images, "
    "prompts too long)", ["platform"],
)
INBOX_OLDEST_WAITING = Gauge(
    "chatbrush_inbox_oldest_waiting_seconds", "How long the oldest message nobody works on "
    "has waited (0 when none); refreshed by each readiness check",
)
SPEND_THIS_MONTH = Gauge(
    "chatbrush_spend_this_month_usd", "Bot-wide spend on model calls since the month began "
    "(UTC), in US dollars, from the store; refreshed by readiness checks, once a minute",
)
BUDGET = Gauge(
    "chatbrush_budget_usd", "A configured bot-wide budget in US dollars (absent when unset)",
    ["budget"],
)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST

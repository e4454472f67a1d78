"""Alerts that fire before users notice (issue 24, item 2).

``promtool test rules`` runs the unit tests of ``deploy/prometheus/alerts.yml`` (skipped
without promtool, unless ``CHATBRUSH_REQUIRE_PROMTOOL=1``, which CI sets: then a missing
promtool is a failure); every alert has a test that makes it fire; every metric a rule reads
is one the bot exports; a readiness check on a real SQLite store puts the inbox's oldest age
and the month's spend into the exposition Prometheus scrapes, and the bot's budget beside it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bot.app.health import Health
from bot.core.config import load_settings
from bot.core.events import ChatKey, Incoming, Sender
from bot.kit import metrics
from bot.models.pricing import PriceTable
from bot.policy.budgets import Budgets
from storage.sqlite import SqliteStore

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy" / "prometheus"
REQUIRED = os.environ.get("CHATBRUSH_REQUIRE_PROMTOOL") == "1"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed; apt-get install prometheus"
        if REQUIRED:
            pytest.fail(message + " (CHATBRUSH_REQUIRE_PROMTOOL=1)")
        pytest.skip(message)
    return found


def load(name: str) -> Any:
    return yaml.safe_load((RULES / name).read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load("alerts.yml")["groups"] for rule in group["rules"]]


def exported() -> dict[str, str]:
    """Every sample name the bot's registry exports, with its family's type."""
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(metrics.render()[0].decode()):
        names[family.name] = family.type
        for suffix in ("_total", "_bucket", "_count", "_sum"):
            names[family.name + suffix] = family.type
    return names


def test_promtool_unit_tests_pass() -> None:
    tool = promtool()
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"],
                 ["check", "config", "prometheus.yml"]):
        done = subprocess.run([tool, *args], cwd=RULES, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_says_what_to_do() -> None:
    fired = {case["alertname"] for test in load("alerts_test.yml")["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == fired
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_metric_a_rule_reads_is_exported() -> None:
    names = exported()
    for rule in alert_rules():
        for name in re.findall(r"\bchatbrush_[a-z_]+", rule["expr"]):
            assert name in names, f"{rule['alert']} reads {name}, which the bot does not export"


def test_compose_runs_prometheus_only_in_the_monitoring_profile() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    service = compose["services"]["prometheus"]
    assert service["profiles"] == ["monitoring"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in service["volumes"]
    assert all(port.startswith("127.0.0.1:") for port in service["ports"])
    scraped = load("prometheus.yml")
    assert scraped["rule_files"] == ["alerts.yml"]
    job = scraped["scrape_configs"][0]
    assert job["job_name"] == "chatbrush"  # what ChatbrushDown selects


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "chatbrush.db")
    yield opened
    await opened.close()


def scraped() -> dict[str, float]:
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.render()[0].decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_readiness_puts_the_inbox_age_and_the_months_spend_in_the_metrics(
    store: SqliteStore,
) -> None:
    chat = ChatKey("telegram", "42")
    await store.record_usage(chat=chat, user_id="7", thread_id=None, model="m", ok=True,
                             images=1, cost_micros=41_500_000)
    await store.inbox_add(Incoming(chat=chat, message_id="1", sender=Sender(id="7"),
                                   text="make it blue", is_private=True), lane="telegram:42")
    store.sync.db.execute("UPDATE inbox SET received_at = received_at - 200")
    reason, _ = await Health(store, stuck_after=300, usage=store).problem()
    assert reason is None
    samples = scraped()
    assert 199 <= samples["chatbrush_inbox_oldest_waiting_seconds"] < 260
    assert samples["chatbrush_spend_this_month_usd"] == pytest.approx(41.5)
    settings = load_settings(gemini_api_key="g-key", chatbrush_monthly_usd=50)
    Budgets(store, settings, PriceTable(), clock=time.time)
    assert scraped()["chatbrush_budget_usd{budget=bot_monthly}"] == 50

"""The container files say what the image and compose really do (cheap checks; the image
itself is built and run by .ci/container).

What an operator relies on: the bot never runs as root, the health check asks the real
health endpoint, everything the bot keeps lands in the one volume, compose starts the
right commands against a healthy PostgreSQL, and every setting .env.example names exists.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from bot.app.cli import build_parser
from bot.core.config import Settings, load_settings
from bot.core.platforms import registered
from bot.provenance.outgoing import credentials_directory

REPO = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def only(keyword: str) -> str:
    [value] = [rest for kw, rest in instructions() if kw == keyword]
    return value


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for kw, rest in instructions():
        if kw == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def test_image_builds_in_two_stages_from_one_overridable_base() -> None:
    assert ("ARG", "BASE=python:3.12-slim") in instructions()
    froms = [rest for kw, rest in instructions() if kw == "FROM"]
    assert froms == ["${BASE} AS build", "${BASE} AS runtime"]


def test_image_runs_as_a_numeric_non_root_user() -> None:
    uid = dict(rest.split("=", 1) for kw, rest in instructions() if kw == "ARG" and "=" in rest)
    user = only("USER").replace("${UID}", uid["UID"])
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user


def test_health_check_asks_readyz_on_port_and_command_is_chatbrush_web() -> None:
    check = only("HEALTHCHECK")
    assert "/readyz" in check and "PORT" in check and "curl" not in check
    assert only("CMD") == '["chatbrush", "web"]'
    assert only("EXPOSE") == image_env()["PORT"] == "8080"


def test_everything_the_bot_keeps_is_in_the_data_volume() -> None:
    assert only("VOLUME") == '["/data"]'
    env = image_env()
    settings = load_settings(chatbrush_db=env["CHATBRUSH_DB"],
                             chatbrush_c2pa_dir=env["CHATBRUSH_C2PA_DIR"])
    database = Path(settings.chatbrush_db)
    pictures = Path(f"{database}-images")  # storage.sqlite keeps them beside the file
    key = credentials_directory(settings, f"sqlite:///{database}")
    assert all(path.is_relative_to("/data") for path in (database, pictures, key))


def test_build_context_holds_every_package_the_image_installs() -> None:
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    copied = {rest.split()[0] for kw, rest in instructions()
              if kw == "COPY" and not rest.startswith("--from")}
    assert copied == {"pyproject.toml", "README.md", "bot", "adapters", "storage"}
    assert {f"!{name}" if "." in name else f"!{name}/" for name in copied} <= set(ignored)


def test_compose_runs_web_and_worker_on_a_healthy_postgres() -> None:
    services = compose()["services"]
    assert set(services) == {"web", "worker", "db", "prometheus"}  # see tests/test_alerts.py
    parser = build_parser()
    assert parser.parse_args(services["web"]["command"][1:]).command == "web"
    assert parser.parse_args(services["worker"]["command"][1:]).command == "run"
    assert services["worker"]["environment"]["CHATBRUSH_HEALTH_PORT"] == image_env()["PORT"]
    for name in ("web", "worker"):
        service = services[name]
        assert service["env_file"] == ".env"
        assert "@db:5432/" in service["environment"]["DATABASE_URL"]
        assert service["depends_on"]["db"] == {"condition": "service_healthy"}
        assert "data:/data" in service["volumes"]
    db = services["db"]
    assert db["image"] == "postgres:16"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert set(compose()["volumes"]) == {"data", "pgdata", "prometheus"}


def test_env_example_names_only_real_settings() -> None:
    names = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M)
    groups = [Settings, *(info.settings for info in registered().values())]
    known = {name.upper() for group in groups for name in group.model_fields}
    known.add("POSTGRES_PASSWORD")
    assert names and set(names) <= known
    assert "POSTGRES_PASSWORD" in names  # compose.yaml refuses to start without it

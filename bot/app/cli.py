"""The ``chatbrush`` command.

``chatbrush`` with no subcommand does the most useful thing it can: run every configured
platform, or, with no platform configured, open the console with the offline demo model.
Platforms are found through entry points (:mod:`bot.core.platforms`), never imported or
named here: each says whether it is configured and which settings turn it on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.core.config import Settings, SettingsError, load_settings
from bot.core.platforms import Adapter, adapter_factories, configured_platforms, registered
from bot.kit.logs import secret_values, setup_logging

if TYPE_CHECKING:
    from bot.app.health import Health

log = logging.getLogger("chatbrush")

NO_KEY = (
    "No GEMINI_API_KEY (or GEMINI_API_KEYS) is set. Get a key at "
    "https://aistudio.google.com/apikey and put it in .env, or try the offline demo model: "
    "add --demo (chatbrush run --demo, web --demo, console --demo)"
)


def no_platform_line() -> str:
    """Which settings would turn a platform on, as each registered platform says."""
    hints = [info.setup_hint for info in registered().values() if info.setup_hint]
    return f"No chat platform is configured (set {', or '.join(hints)})."


def _runnable_titles() -> str:
    """"Telegram and Slack": the platforms ``chatbrush run`` can start."""
    titles = [info.title or info.name for info in registered().values() if info.create]
    return " and ".join([", ".join(titles[:-1]), titles[-1]] if len(titles) > 1 else titles)


def build_parser() -> argparse.ArgumentParser:
    runnable = _runnable_titles()
    parser = argparse.ArgumentParser(
        prog="chatbrush",
        description=f"Conversational image editing with Gemini in {runnable or 'chats'}. "
        "With no command: run the configured platforms, or the demo console if none is.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run every configured platform (long polling / Socket Mode)")
    web = sub.add_parser("web", help=f"serve webhooks ({runnable}), /healthz on $PORT")
    for serving in (run, web):  # rehearse a deployment before having a model key
        serving.add_argument("--demo", action="store_true",
                             help="answer with the offline demo model (no API key needed)")
    web.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    web.add_argument("--port", type=int, default=None, help="port (default $PORT or 8080)")
    console = sub.add_parser("console", help="chat with the bot in this terminal")
    console.add_argument("--demo", action="store_true",
                         help="use the offline demo model (no API key needed)")
    console.add_argument("--out", type=Path, default=Path("chatbrush-out"),
                         help="where returned images are saved (default ./chatbrush-out)")
    purge = sub.add_parser("purge", help="remove the pictures of conversations idle longer "
                           "than CHATBRUSH_RETENTION_DAYS (or --days) and reclaim the space")
    purge.add_argument("--days", type=float, default=None,
                       help="idle for more than this many days (default "
                       "$CHATBRUSH_RETENTION_DAYS)")
    backup = sub.add_parser("backup", help="copy the database, its pictures and the signing "
                            "key into a new folder, while the bot runs")
    backup.add_argument("dest", type=Path, metavar="DEST", help="the folder to create")
    restore = sub.add_parser("restore", help="put a backup back where the settings keep the "
                             "bot's files (refused while a bot uses them)")
    restore.add_argument("source", type=Path, metavar="SRC", help="a folder made by backup")
    restore.add_argument("--replace", action="store_true",
                         help="overwrite an existing database and key with the backup's")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        configured = configured_platforms(settings)  # every platform's settings checked
    except SettingsError as exc:
        print(f"chatbrush: {exc}", file=sys.stderr)
        return 2
    command = args.command
    if command is None:
        if not configured:
            print(f"{no_platform_line()}\nStarting the local console with the offline demo "
                  "model.", file=sys.stderr)
            args = build_parser().parse_args(["console", "--demo"])
            command = "console"
        else:
            command = "run"
    try:
        if command == "console":
            return _console(settings, demo=args.demo, out_dir=args.out)
        if command == "purge":
            return _purge(settings, days=args.days)
        if command in ("backup", "restore"):
            return _backup(settings, args)
        if command == "web":
            return _serve(settings, webhook=True, demo=args.demo, host=args.host,
                          port=args.port if args.port is not None else settings.port)
        return _serve(settings, webhook=False, demo=getattr(args, "demo", False))
    except SettingsError as exc:
        print(f"chatbrush: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _console(settings: Settings, *, demo: bool, out_dir: Path) -> int:
    if not demo and settings.chatbrush_provider == "gemini" and not settings.gemini_keys():
        print(NO_KEY, file=sys.stderr)
        return 2
    setup_logging(secret_values(settings, *settings.groups_read()),
                  level=settings.log_level(logging.WARNING), chatty=chatty_loggers())
    (run_console,) = [ep.load() for ep in entry_points(group="chatbrush.console")]
    from bot.app.runtime import open_runtime

    async def go() -> int:
        async with open_runtime(settings, demo=demo) as runtime:
            result: int = await run_console(runtime.intake, out_dir=out_dir)
            return result

    return asyncio.run(go())


def _purge(settings: Settings, *, days: float | None) -> int:
    """``chatbrush purge``: what the background retention does, now, saying what it does."""
    days = days if days is not None else settings.chatbrush_retention_days
    if days is None or days <= 0:
        print("chatbrush purge: say how old is too old: set CHATBRUSH_RETENTION_DAYS or pass "
              "--days N (a positive number of days)", file=sys.stderr)
        return 2
    from bot.app.runtime import open_store
    from bot.policy import retention

    async def go() -> int:
        try:
            store = await open_store(settings)
        except SettingsError:
            raise
        except Exception as exc:  # e.g. the running bot holds the SQLite file
            print(f"chatbrush purge: cannot open the database: {exc}", file=sys.stderr)
            return 1
        try:
            now = time.time()
            before = retention.cutoff(days, now=now)
            print(f"Removing the pictures of conversations idle for more than {days:g} days "
                  f"(no message since {retention.when(before)})…", flush=True)
            report = await retention.purge(store, days=days, now=now)
        finally:
            await store.close()
        print(f"Done: {retention.describe(report)}." if report.threads
              else "Done: no conversation was idle that long; nothing removed.")
        return 0

    return asyncio.run(go())


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    """``chatbrush backup DEST`` / ``restore SRC``, each line of progress as it goes."""
    from bot.app import backup

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        if args.command == "backup":
            backup.backup(settings, args.dest, say=say)
        else:
            backup.restore(settings, args.source, replace=args.replace, say=say)
    except OSError as exc:
        print(f"chatbrush {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def chatty_loggers() -> list[str]:
    """The loggers every registered platform's SDK chatters on."""
    return [name for info in registered().values() for name in info.chatty_loggers]


def _serve(settings: Settings, *, webhook: bool, demo: bool = False, host: str = "0.0.0.0",
           port: int = 0) -> int:
    if not demo and settings.chatbrush_provider == "gemini" and not settings.gemini_keys():
        print(NO_KEY, file=sys.stderr)
        return 2
    setup_logging(secret_values(settings, *settings.groups_read()),
                  level=settings.log_level(logging.INFO), chatty=chatty_loggers())
    return asyncio.run(_serve_async(settings, webhook=webhook, demo=demo, host=host, port=port))


async def _serve_async(settings: Settings, *, webhook: bool, demo: bool, host: str,
                       port: int) -> int:
    """Start in order (store, adapters, HTTP, processing) and stop in reverse: intake
    first, then running turns get their grace, then connections close."""
    from aiohttp import web

    from bot.app.health import Health
    from bot.app.runtime import open_runtime
    from bot.app.web import start_metrics_server

    stop = _stop_on_signals()
    async with open_runtime(settings, demo=demo) as runtime:
        intake = runtime.intake
        adapters: list[Adapter] = []
        for name, factory in adapter_factories().items():
            adapter = factory(settings, intake)
            if adapter is not None:
                log.info("platform %s configured", name)
                adapters.append(adapter)
                intake.register(adapter)
        if not adapters:
            print(no_platform_line(), file=sys.stderr)
            return 2
        runner: web.AppRunner | None = None
        metrics_runner: web.AppRunner | None = None
        started: list[Adapter] = []
        health = Health(runtime.store, adapters, stuck_after=settings.chatbrush_ready_inbox_age,
                        usage=runtime.store)
        try:
            runner = await _open_http(settings, adapters, health, webhook=webhook, host=host,
                                      port=port)
            metrics_runner = await start_metrics_server(settings)
            for adapter in adapters:
                await adapter.start(webhook=webhook)
                started.append(adapter)
            await intake.start()
            await stop.wait()
            log.info("stopping: no new messages; running turns get %.0fs",
                     settings.chatbrush_shutdown_grace)
        finally:
            for adapter in reversed(started):
                with contextlib.suppress(Exception):
                    await adapter.stop_receiving()
            await intake.stop(grace=settings.chatbrush_shutdown_grace)
            for adapter in reversed(adapters):
                try:
                    await adapter.close()
                except Exception:
                    log.warning("closing %s failed", adapter.name, exc_info=True)
            for server in (runner, metrics_runner):
                if server is not None:
                    await server.cleanup()
    log.info("stopped")
    return 0


async def _open_http(settings: Settings, adapters: Sequence[Adapter], health: Health, *,
                     webhook: bool, host: str, port: int) -> Any:
    """``web``: the one public server (webhooks, health) on ``port``. ``run``: health on
    ``CHATBRUSH_HEALTH_PORT`` when set (metrics have a server of their own, for both). The
    aiohttp runner to clean up, if any."""
    from aiohttp import web

    from bot.app.health import serve_health

    if webhook:
        app, mounted = build_web_app(adapters, settings=settings, health=health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("serving %s on http://%s:%s", ", ".join(mounted) or "health only",
                 host, port)
        return runner
    if settings.chatbrush_health_port is None:
        return None
    return await serve_health(health, settings.chatbrush_health_host,
                              settings.chatbrush_health_port)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (the loop keeps running: shutdown is orderly)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def build_web_app(adapters: Sequence[Adapter], *, settings: Settings | None = None,
                  health: Health | None = None) -> tuple[Any, list[str]]:
    """The one public HTTP server: health (:mod:`bot.app.health`: /healthz, /readyz) and
    every adapter's webhook routes; /metrics only when CHATBRUSH_METRICS_ON_WEB_PORT asks (it
    tells call counts and spend to anyone)."""
    from aiohttp import web

    from bot.app.web import healthz, metrics_handler, metrics_token

    settings = settings or load_settings()
    app = web.Application(client_max_size=settings.chatbrush_max_request_bytes)
    if health is not None:
        health.mount(app)
    else:
        app.router.add_get("/healthz", healthz)
    if settings.chatbrush_metrics_on_web_port:
        app.router.add_get("/metrics", metrics_handler(metrics_token(settings)))
    mounted = [a.name for a in adapters if a.mount(app)]
    return app, mounted


if __name__ == "__main__":
    raise SystemExit(main())

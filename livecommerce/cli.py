"""The `livecommerce` command: serve, demo, db upgrade, user add, addresses import, check-config."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from aiohttp import web

from .config import Config, ConfigError, load_config
from .db import ensure_sqlite_dir, make_engine, make_sessionmaker, upgrade, upgrade_sync, utcnow
from .logs import setup_logging
from .models import Role

log = logging.getLogger("livecommerce")


def _config(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get("LIVECOMMERCE_CONFIG")
    if path is None and Path("config.toml").is_file():
        path = "config.toml"
    config = load_config(path)
    server: dict[str, object] = {}
    if getattr(args, "host", None):
        server["host"] = args.host
    if getattr(args, "port", None) is not None:
        server["port"] = args.port
    return config.replace(server=server) if server else config


async def _current_revision(config: Config) -> str | None:
    from sqlalchemy import text

    engine = make_engine(config.database)
    try:
        async with engine.connect() as conn:
            try:
                return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            except Exception:
                return None
    finally:
        await engine.dispose()


def _head() -> str:
    from alembic.script import ScriptDirectory

    from .db import _alembic_config

    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def prepare_database(config: Config) -> None:
    """The embedded default migrates itself; PostgreSQL must have been migrated by `db upgrade`
    (several processes starting at once must not race to migrate)."""
    url = config.database.url
    if url.startswith("sqlite"):
        ensure_sqlite_dir(url)
        upgrade_sync(url)
        return
    current = asyncio.run(_current_revision(config))
    if current != _head():
        raise SystemExit(f"The database is at revision {current or 'none'}, the code needs {_head()}: "
                         "run `livecommerce db upgrade` first.")


def raise_open_files() -> tuple[int, int]:
    """Let the server hold as many connections as the system allows it: the soft limit on open files (each
    viewer is one) raised to the hard limit. Returns (before, after)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, wanted
    return soft, soft


def run_server(config: Config, banner: list[str] | None = None,
               extend: Callable[[web.Application], None] | None = None) -> None:
    """Serve `config`'s app; `extend` adds to it first (the demo's video)."""
    from .app import create_app

    before, after = raise_open_files()
    if after < 20_000:
        log.warning("few open files allowed: about %s viewers at most on this process (raise `ulimit -n`)",
                    after - 100, extra={"open_files": after})
    elif after != before:
        log.info("open files allowed: %s (was %s)", after, before)
    app = create_app(config)
    if extend is not None:
        extend(app)

    async def _signals(app_: web.Application) -> None:
        # On SIGTERM/SIGINT: stop taking new sockets and tell the connected ones to go at once (they
        # reconnect to another process and recover what they miss), then let aiohttp's graceful exit
        # finish the in-flight requests and close the database and Redis.
        import signal

        from .app import close_sockets

        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        def _exit() -> None:
            raise web.GracefulExit()

        async def _drain() -> None:
            try:
                await asyncio.wait_for(close_sockets(app_), timeout=5)
            except TimeoutError:  # many sockets: the rest are closed with the server
                log.warning("not every socket was told to go within 5 s")
            finally:
                loop.call_soon(_exit)

        def _on_signal() -> None:
            if not tasks:
                tasks.add(loop.create_task(_drain()))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal)

    app.on_startup.append(_signals)

    async def _settle(app_: web.Application) -> None:
        # What exists after start-up lives as long as the process: keep the collector from walking it
        # again and again while a room is busy.
        import gc

        gc.collect()
        gc.freeze()

    app.on_startup.append(_settle)

    def _print(_: str) -> None:
        base = f"http://{config.server.host}:{config.server.port}"
        print(f"livecommerce serving on {base}  (Ctrl+C to stop)", flush=True)
        for line in banner or []:
            print(line.replace("{base}", base), flush=True)

    loop = None
    if config.server.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # pragma: no cover - installed with the package on Linux and macOS
            log.warning("uvloop is not installed: using asyncio's event loop")
        else:
            loop = uvloop.new_event_loop()
    web.run_app(app, host=config.server.host, port=config.server.port,
                shutdown_timeout=config.server.shutdown_timeout, backlog=config.server.backlog, access_log=None,
                print=_print, handle_signals=True, loop=loop)


def cmd_serve(args: argparse.Namespace) -> int:
    config = _config(args)
    setup_logging(config.logging)
    prepare_database(config)
    run_server(config)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo_video
    from .demo import DemoResult, seed

    config = _config(args)
    setup_logging(config.logging)
    if config.database.url.startswith("sqlite"):
        prepare_database(config)
    else:
        ensure_sqlite_dir(config.database.url)
        asyncio.run(upgrade(config.database.url))

    video_dir = Path(args.video_dir)
    video = not args.no_video and demo_video.make(video_dir)

    async def _seed() -> DemoResult:
        engine = make_engine(config.database)
        try:
            async with make_sessionmaker(engine).begin() as db:
                return await seed(db, config, utcnow(), stream_url=demo_video.STREAM_URL if video else "")
        finally:
            await engine.dispose()

    result = asyncio.run(_seed())
    banner = [
        "",
        "  Demo market ready" + (" (created)" if result.created else " (already there; new passwords below)"),
        f"  Viewer page (live now): {{base}}/live/{result.live_broadcast_id}",
        f"  Host console:           {{base}}/host/broadcasts/{result.live_broadcast_id}",
        "  Staff pages:            {base}/staff   {base}/staff/catalogue",
        *([f"  Last week's show:       {{base}}/live/{result.past_broadcast_id} (the replay)   "
           f"{{base}}/staff/broadcasts/{result.past_broadcast_id}/report (its report)"]
          if result.past_broadcast_id else []),
        "  Sign in at {base}/login with:",
        f"    staff    / {result.staff_password}",
        f"    host     / {result.host_password}",
        f"    merchant / {result.merchant_password}",
        "",
    ]
    if args.no_serve:
        for line in banner:
            print(line.replace("{base}", f"http://{config.server.host}:{config.server.port}"))
        return 0
    run_server(config, banner, (lambda app: demo_video.add_routes(app, video_dir)) if video else None)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = _config(args)
    ensure_sqlite_dir(config.database.url)
    upgrade_sync(config.database.url, args.revision)
    print(f"database at {args.revision}")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from .accounts import create_user

    config = _config(args)
    role = Role(args.role)
    password: str | None = None
    if role is not Role.VIEWER or args.password_stdin:
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"Password for {args.name}: ")
            if password != getpass.getpass("Again: "):
                print("The two passwords differ.", file=sys.stderr)
                return 2

    async def _add() -> int:
        engine = make_engine(config.database)
        try:
            async with make_sessionmaker(engine).begin() as db:
                user = await create_user(db, username=args.name, role=role, password=password,
                                         display_name=args.display_name,
                                         min_password=config.security.password_min_length,
                                         merchant_id=args.merchant)
                return user.id
        finally:
            await engine.dispose()

    if config.database.url.startswith("sqlite"):
        prepare_database(config)
    from .errors import AppError

    try:
        uid = asyncio.run(_add())
    except AppError as exc:
        print(f"error: {exc.message % exc.params if exc.params else exc.message}", file=sys.stderr)
        return 2
    print(f"created {role.value} account {args.name!r} (id {uid})")
    return 0


def cmd_addresses_import(args: argparse.Namespace) -> int:
    """Add a CSV file's addresses to the address book the postcode search reads: all of them, or none when a
    row is bad (each bad row is named by its line)."""
    from orders.address_book import ImportReport, import_csv

    config = _config(args)
    path = Path(args.file)
    if not path.is_file():
        print(f"error: no file {args.file}", file=sys.stderr)
        return 2
    if config.database.url.startswith("sqlite"):
        prepare_database(config)

    async def _import(lines: Iterator[str]) -> ImportReport:
        engine = make_engine(config.database)
        try:
            async with make_sessionmaker(engine)() as db:
                report = await import_csv(db, lines)
                if report.bad:
                    await db.rollback()
                else:
                    await db.commit()
                return report
        finally:
            await engine.dispose()

    with path.open("rb") as fh:  # each line decoded as it is read: a line that is not UTF-8 is named
        report = asyncio.run(_import(raw.decode("utf-8") for raw in fh))
    if report.bad:
        for p in report.problems:
            print(f"{args.file}: {p}", file=sys.stderr)
        if report.bad > len(report.problems):
            print(f"{args.file}: … and {report.bad - len(report.problems)} more", file=sys.stderr)
        print(f"nothing imported: {report.bad} bad row{'s' if report.bad != 1 else ''}", file=sys.stderr)
        return 1
    print(f"{report.added} addresses added, {report.skipped} skipped (already in the address book)")
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from .loadtest import main as loadtest_main

    return loadtest_main(args)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _config(args)
    print(f"configuration is valid (database: {config.database.url.split('://')[0]}, "
          f"redis: {'on' if config.redis.url else 'off'})")
    return 0


def cmd_giveaway_verify(args: argparse.Namespace) -> int:
    """Recompute a giveaway's winners from its published proof (fetched from a server, or a saved file) and
    say whether the commitment, the entry list's digest and the winners match."""
    import json
    import urllib.request

    from coupons import draw

    if args.file:
        with open(args.file, encoding="utf-8") as fh:
            proof = json.load(fh)
    else:
        if args.giveaway is None:
            print("give --giveaway ID (with --url) or --file PROOF.json", file=sys.stderr)
            return 2
        url = f"{args.url.rstrip('/')}/api/v1/giveaways/{args.giveaway}/proof"
        with urllib.request.urlopen(url, timeout=10) as resp:
            proof = json.load(resp)
    if proof.get("seed") is None:
        print(f"giveaway {proof.get('id')}: not drawn yet (state {proof.get('state')}); its commitment is "
              f"{proof.get('commitment')}")
        return 1
    numbers = [int(e["number"]) for e in proof.get("entry_list", [])]
    winners = [int(w["number"]) for w in proof.get("winners", [])]
    result = draw.verify(proof["seed"], proof["commitment"], numbers, proof.get("digest") or "", winners,
                         int(proof["winners_count"]))
    mark = {True: "ok", False: "MISMATCH"}
    print(f"giveaway {proof.get('id')}: {proof.get('prize_ko')}")
    print(f"  commitment = sha256(seed): {mark[result.commitment_ok]}")
    print(f"  digest of the {len(numbers)} entries: {mark[result.digest_ok]}")
    print(f"  winners {winners}: {mark[result.winners_ok]}")
    if args.entry is not None:
        print(f"  entry number {args.entry}: {'in the list' if args.entry in numbers else 'NOT in the list'}")
    print("verified: the draw is the one committed to" if result.ok else f"NOT verified: {result.reason}")
    return 0 if result.ok and (args.entry is None or args.entry in numbers) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="livecommerce", description="Live-commerce session manager")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, server: bool = False) -> None:
        sp.add_argument("--config", help="a TOML configuration file (default: ./config.toml if present)")
        if server:
            sp.add_argument("--host", help="address to listen on (server.host)")
            sp.add_argument("--port", type=int, help="port to listen on (server.port)")

    sp = sub.add_parser("serve", help="run the server")
    common(sp, server=True)
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("demo", help="fill the database with a demo market, then serve it")
    common(sp, server=True)
    sp.add_argument("--no-serve", action="store_true", help="only fill the database and print the accounts")
    sp.add_argument("--video-dir", default="demo-video",
                    help="where the demo's video is made once and served from (default: ./demo-video)")
    sp.add_argument("--no-video", action="store_true", help="no video in the demo's live broadcast")
    sp.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database commands").add_subparsers(dest="db_command", required=True)
    sp = db.add_parser("upgrade", help="apply migrations")
    common(sp)
    sp.add_argument("--revision", default="head")
    sp.set_defaults(func=cmd_db_upgrade)

    user = sub.add_parser("user", help="accounts").add_subparsers(dest="user_command", required=True)
    sp = user.add_parser("add", help="create an account")
    common(sp)
    sp.add_argument("--role", required=True, choices=[r.value for r in Role])
    sp.add_argument("--display-name")
    sp.add_argument("--merchant", type=int, help="the merchant (stall) id, for a merchant account")
    sp.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    sp.add_argument("name")
    sp.set_defaults(func=cmd_user_add)

    addresses = sub.add_parser("addresses", help="the address book of the postcode search").add_subparsers(
        dest="addresses_command", required=True)
    sp = addresses.add_parser("import", help="add the addresses of a CSV file (UTF-8; header: postal_code,"
                                             "road_address,jibun_address,building_name)")
    common(sp)
    sp.add_argument("file", help="the CSV file")
    sp.set_defaults(func=cmd_addresses_import)

    sp = sub.add_parser("loadtest", help="open many real viewers on a live room and measure delivery")
    from .loadtest import add_arguments

    add_arguments(sp)
    sp.set_defaults(func=cmd_loadtest)

    giveaway = sub.add_parser("giveaway", help="giveaways").add_subparsers(dest="giveaway_command", required=True)
    sp = giveaway.add_parser("verify", help="recompute a draw's winners from its published proof")
    sp.add_argument("--giveaway", type=int, help="the giveaway's id (its proof is read from --url)")
    sp.add_argument("--url", default="http://127.0.0.1:8080", help="the server (default: %(default)s)")
    sp.add_argument("--file", help="a saved proof (the JSON of GET /api/v1/giveaways/{id}/proof) instead")
    sp.add_argument("--entry", type=int, help="also check that this entry number is in the list")
    sp.set_defaults(func=cmd_giveaway_verify)

    sp = sub.add_parser("check-config", help="validate the configuration and exit")
    common(sp)
    sp.set_defaults(func=cmd_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

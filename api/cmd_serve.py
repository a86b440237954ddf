"""``evault serve``: the service (API, watchers, media workers, checkpointer) until SIGINT or
SIGTERM; with ``--workers``, API worker processes on the same socket (``api.workers``)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import socket
import ssl
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from api import workers
from api.app import make_app
from api.auth import client_ssl_context
from api.config import Config
from api.keys import ALL_PARTS, RUNTIME
from vault.access import principals, tokens
from vault.errors import ConfigError

log = logging.getLogger("evault.serve")


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the service (API, watchers, media workers, checkpointer)")
    p.add_argument("--listen", help="HOST:PORT (default: service.listen)")
    p.add_argument(
        "--only",
        type=_parts,
        default=ALL_PARTS,
        help="comma-separated parts to run: api, ingest, media (default: all)",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        help="HTTP API processes sharing the listening socket (default: service.workers); all"
        " but the main process run only the API part",
    )
    # An API worker started by a main process (api.workers): the listening sockets it inherited
    # and the main process's pid.
    p.add_argument("--worker-fds", type=_fds, help=argparse.SUPPRESS)
    p.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)
    p.add_argument(
        "--print-admin-token",
        action="store_true",
        help="create a 30-day API token for the admin principal and print it (as `make run` does)",
    )
    p.set_defaults(func=cmd_serve)


def _parts(text: str) -> frozenset[str]:
    parts = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = parts - ALL_PARTS
    if unknown or not parts:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {', '.join(sorted(unknown)) or '(none)'}; choose from "
            + ", ".join(sorted(ALL_PARTS))
        )
    return parts


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes from 1 to 64")
    return int(text)


def _fds(text: str) -> tuple[int, ...]:
    return tuple(int(fd) for fd in text.split(","))


def _listen_address(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as (host, port); ConfigError naming the value."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"listen address {listen!r} is not HOST:PORT with a port from 1 to 65535 "
            "(--listen HOST:PORT or service.listen)"
        )
    return host, int(port)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _port_busy(host: str, port: int, exc: OSError) -> ConfigError:
    reason = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return ConfigError(
        f"cannot listen on {_url_host(host)}:{port}: {reason} (another evault serve?); choose "
        "another port with --listen HOST:PORT or service.listen in evault.toml "
        "(EVAULT_SERVICE_LISTEN)"
    )


def _check_port_free(host: str, port: int) -> None:
    """ConfigError (one line, before anything starts) if ``host:port`` cannot be listened on.
    Binds like the server will (SO_REUSEADDR), so a port another process listens on fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as exc:
                raise _port_busy(host, port, exc) from None


async def cmd_serve(args: argparse.Namespace, cfg: Config) -> int:
    """Serve until SIGINT/SIGTERM; everything opened is closed in order. Prints the API's and
    the console's URLs once listening; a port that cannot be listened on is one line naming it
    and how to choose another (ConfigError: exit 2), before anything is started."""
    if args.worker_fds:
        return await _serve_worker(args, cfg)
    host, port = _listen_address(args.listen or cfg.service.listen)
    count = args.workers or cfg.service.workers
    socks: list[socket.socket] = []
    if count > 1:
        if "api" not in args.only:
            raise ConfigError("--workers (service.workers) above 1 needs the api part (--only)")
        _check_port_free(host, port)  # before re-executing, then bound for good
        workers.prepare_metrics(cfg.data)  # may re-execute this process (same pid)
        try:
            socks = workers.bind(host, port)
        except OSError as exc:
            raise _port_busy(host, port, exc) from None
    else:
        _check_port_free(host, port)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        log.warning("running as root: in production run evidence-vault as its own user")
    app = make_app(cfg, args.only)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tls = _tls(cfg)
    if socks:
        for s in socks:
            await web.SockSite(runner, s, ssl_context=tls).start()
    else:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:  # taken between the check and now
            await runner.cleanup()
            raise _port_busy(host, port, exc) from None
    pool = None
    if count > 1:
        pool = workers.Workers(
            count - 1,
            _worker_argv(args, [s.fileno() for s in socks]),
            _worker_env(cfg, app[RUNTIME].db.dsn),
            [s.fileno() for s in socks],
        )
        pool.start()
    parts = ",".join(sorted(args.only))
    base = f"{'https' if tls else 'http'}://{_url_host(host)}:{port}"
    print(f"evidence-vault serving on {base} ({parts})", flush=True)
    print(f"  API      {base}  (OpenAPI document: {base}/openapi.json)", flush=True)
    if "api" in args.only:
        print(f"  console  {base}/console/  (sign in with an API token)", flush=True)
    if args.print_admin_token:
        rt = app[RUNTIME]
        admin = await principals.load(rt.db.pool, "admin")
        issued = await tokens.create(
            rt.db.pool, rt.ledger, admin, "admin", timedelta(days=30), comment="evault serve"
        )
        print(f"admin token (valid until {issued.expires_at:%Y-%m-%d}): {issued.token}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if pool is not None:
        await pool.stop()  # before the parts they use (the embedded server) stop
    await runner.cleanup()
    for s in socks:
        s.close()
    return 0


def _tls(cfg: Config) -> ssl.SSLContext | None:
    svc = cfg.service
    if not svc.tls_cert:
        return None
    return client_ssl_context(
        str(cfg.path(Path(svc.tls_cert))),
        str(cfg.path(Path(svc.tls_key or svc.tls_cert))),
        str(cfg.path(Path(svc.tls_client_ca))) if svc.tls_client_ca else "",
    )


def _worker_argv(args: argparse.Namespace, fds: list[int]) -> list[str]:
    """The command line of an API worker of this main process."""
    argv = [sys.executable, "-m", "api.cli"]
    if args.config:
        argv += ["--config", str(Path(args.config).resolve())]
    if args.data:
        argv += ["--data", str(Path(args.data).resolve())]
    fd_list = ",".join(map(str, fds))
    return [
        *argv,
        "serve",
        "--only",
        "api",
        "--worker-fds",
        fd_list,
        "--worker-of",
        str(os.getpid()),
    ]


def _worker_env(cfg: Config, dsn: str) -> dict[str, str]:
    """The workers' environment: on the embedded server, the main process's DSN."""
    env = dict(os.environ)
    if not cfg.database.dsn:
        env["EVAULT_DATABASE_DSN"] = dsn
    return env


async def _serve_worker(args: argparse.Namespace, cfg: Config) -> int:
    """An API worker (``api.workers``): the API on the inherited sockets until SIGTERM/SIGINT
    or until the main process is gone."""
    stop = asyncio.Event()
    watcher = workers.die_with_parent(args.worker_of, stop)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    socks = workers.adopt(args.worker_fds)
    app = make_app(cfg, frozenset({"api"}), worker=True)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        tls = _tls(cfg)
        for s in socks:
            await web.SockSite(runner, s, ssl_context=tls).start()
        log.info("API worker serving (pid %d)", os.getpid())
        await stop.wait()
    finally:
        watcher.cancel()
        await runner.cleanup()
    return 0

"""``evflow serve``: the HTTP API and the dashboard (glue over :mod:`evflow.serve`)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from evflow.cli.context import Globals


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; beyond loopback needs tokens.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=0, max=65535)] = 8080,
    tokens: Annotated[
        str | None,
        typer.Option(
            "--tokens",
            metavar="FILE",
            help='Bearer tokens and scopes, JSON {"TOKEN": ["ingest", "read"]}'
            "  [env var: EVFLOW_TOKENS]",
        ),
    ] = None,
    max_body: Annotated[
        int, typer.Option("--max-body", help="Largest request body in bytes (else 413).", min=1)
    ] = 1024 * 1024,
) -> None:
    """Serve the log over HTTP: CloudEvents in, projections and events out, a dashboard at /.

    Example: EVFLOW_TOKENS='{"s3cret": ["ingest", "read"]}' evflow serve --host 0.0.0.0
    (see docs/serve.md). SIGTERM or Ctrl-C lets the requests in hand finish.
    """
    g: Globals = ctx.obj
    from evflow.app import Evflow
    from evflow.serve.auth import load_tokens
    from evflow.serve.server import ServeOptions, run

    accepted = load_tokens(os.environ, tokens)
    settings = g.flow().settings
    options = ServeOptions(host=host, port=port, max_body=max_body)
    run(lambda: Evflow(settings=settings), accepted, options)

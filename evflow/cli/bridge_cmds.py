"""``evflow bridge nats``: the log out to NATS JetStream, or a subject's messages into the log."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from evflow.cli.context import Globals

bridge_app = typer.Typer(help="Bridge the log to other systems.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bridge_app, name="bridge")


@bridge_app.command("nats")
def nats(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", help="NATS server URL.")] = "nats://127.0.0.1:4222",
    stream: Annotated[
        str, typer.Option("--stream", help="JetStream stream (created when missing).")
    ] = "EVFLOW",
    subject_prefix: Annotated[
        str,
        typer.Option("--subject-prefix", help="Events go to PREFIX.TYPE (evflow.order.placed)."),
    ] = "evflow",
    once: Annotated[
        bool, typer.Option("--once", help="Handle what is there now, then exit (CI, cron).")
    ] = False,
    ingest: Annotated[
        str | None,
        typer.Option(
            "--ingest", metavar="SUBJECT", help="Append the messages of SUBJECT to the log instead."
        ),
    ] = None,
    durable: Annotated[
        str | None,
        typer.Option("--durable", help="With --ingest: the durable consumer's name."),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Messages per batch.")] = 1000,
) -> None:
    """Publish every event, in seq order, to JetStream (follows the log until Ctrl-C), or with
    --ingest append another service's messages as events. See docs/nats.md."""
    g: Globals = ctx.obj
    from evflow.bridge import nats as bridge

    options = bridge.NatsOptions(url=url, stream=stream, prefix=subject_prefix, batch=batch)
    options.check()
    flow = g.flow()
    if ingest is None:

        def publish(stop: Any) -> Any:
            return bridge.publish_log(flow, options, once=once, stop=stop, log=g.out.warn)

        out = bridge.run(publish)
        g.out.warn(
            f"published {out.published} event(s) to stream {stream}"
            f" ({out.duplicates} already there); position {out.position}"
        )
        return

    def consume(stop: Any) -> Any:
        return bridge.ingest(
            flow, options, ingest, durable=durable, once=once, stop=stop, log=g.out.warn
        )

    got = bridge.run(consume)
    g.out.warn(
        f"ingested {got.appended} event(s) from {ingest}: {got.duplicates} duplicate(s),"
        f" {got.own} of our own skipped, {got.terminated} terminated"
    )

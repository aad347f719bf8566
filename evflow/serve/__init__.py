"""``evflow serve``: the log over HTTP — CloudEvents in, read models out, a dashboard.

An edge like the CLI: every request is one call to the :class:`~evflow.app.Evflow` facade (on the
same append path as ``evflow emit``). Starlette and uvicorn (the ``serve`` extra) are imported by
this package alone. See docs/serve.md.
"""

"""Bridges between the log and other systems (NATS JetStream: :mod:`evflow.bridge.nats`).

A bridge is an edge, like the CLI: it uses the log only through :class:`evflow.app.Evflow`.
Nothing here imports a client library: :mod:`evflow.bridge.nats` does, lazily.
"""

"""The ``evflow`` command: thin glue over the library (one module per command group)."""

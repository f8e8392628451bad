"""`toolkit benchmark`: ``run`` finds (and converts) the formats, ``worker`` measures one in its own process, ``report`` writes the table.

Orchestration like ``toolkit/commands``: it may import ``training`` and ``converters``.
"""

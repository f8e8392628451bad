"""`toolkit benchmark`: every format of one model side by side (size, accuracy, latency, memory).

- ``run``: finds the formats, converts the cheap ones a source lacks, starts one worker per
  model and thread count, and assembles the report;
- ``worker``: measures one model in a process of its own (``python -m toolkit.benchmark.worker``);
- ``report``: the Markdown table and notes, and the files benchmark.json and benchmark.md.

Orchestration like ``toolkit/commands``: it may import ``training`` and ``converters``.
"""

"""One module per `toolkit` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``."""

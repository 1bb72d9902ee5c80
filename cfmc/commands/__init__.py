"""Sub-commands of the cfmc CLI: each module has add_arguments(parser) and run(args) -> int."""

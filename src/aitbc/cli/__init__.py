"""The ``aitbc`` command line: one binary, a subcommand per role."""

"""Subcommands of the `polcore` command line, one module per group."""

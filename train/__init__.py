"""The command line trainer: see __main__.py."""

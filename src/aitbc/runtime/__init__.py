"""Shared shell helpers (files, key files, logging, settings) used by every service and the CLI."""

"""Shared core of the platform: configuration, site registry and command line."""

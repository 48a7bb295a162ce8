"""Dependency advisories: an offline OSV database, manifest parsers, matching."""

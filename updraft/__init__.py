"""Updraft: a pilot-based workload management system in the spirit of glideinWMS."""

__version__ = "0.1.0"

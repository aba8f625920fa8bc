"""Qamqor: an open platform for proactive, targeted social protection."""

__version__ = "0.1.0"

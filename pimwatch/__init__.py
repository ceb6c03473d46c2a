"""pimwatch: event-driven alerts on Microsoft Entra PIM and break-glass activity."""

__version__ = "0.1.0"
SCHEMA_VERSION = 1

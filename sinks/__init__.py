"""Sink modules, one per file, found by their config ``type`` (the module name); no registry."""

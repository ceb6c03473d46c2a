"""Detector modules, one per file, found by pimwatch.detector.discover (no registry)."""

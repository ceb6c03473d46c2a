"""Detector modules, one per file, found by pimwatch.detection.detector.discover (no registry)."""

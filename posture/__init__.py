"""Posture checks: one module per check, found by discovery (:func:`pimwatch.graph.posture.discover`).

Each module defines ``CHECK`` (:class:`pimwatch.graph.posture.Check`) and
``run(snapshot, params, context) -> list[Finding]``. docs/graph.md lists them with their anchors.
"""

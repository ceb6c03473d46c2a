"""Microsoft Graph: the tenant's PIM posture (``pimwatch posture``, the Functions ``posture`` timer).

Nothing here is imported on the Event Hub path. :mod:`pimwatch.graph.settings` (pydantic only) is what
the config reads; the Graph client (:mod:`pimwatch.graph.client`) imports ``msgraph`` and
``azure.identity`` only when a posture run builds it. See ``docs/graph.md``.
"""

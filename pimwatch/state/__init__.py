"""Where state lives: the store backends (SQLite :mod:`~pimwatch.state.sqlite`, Azure Tables
:mod:`~pimwatch.state.tables`) implementing :mod:`pimwatch.detection.contract`, the archives
(quarantine, dead letters), retention and partition progress."""

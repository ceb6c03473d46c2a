"""``pimwatch report``: the PIM report auditors and the weekly review ask for (issue 13).

From input files (any shape the reader takes) it writes ``report.html`` (one self-contained page,
charts as inline SVG) and CSV files. The input is read once through the detectors' own pipeline
(:mod:`pimwatch.report.collect`), so every figure comes from the normalized events the detectors see
and the alerts are the detectors' own; :mod:`pimwatch.report.frames` builds the tables with pandas,
:mod:`pimwatch.report.charts` draws them with matplotlib, :mod:`pimwatch.report.render` writes them.

pandas and matplotlib are the optional extra ``pimwatch[report]``: only :mod:`.command` is imported
by the CLI, and it imports the rest when the command runs. The Event Hub path never imports them.
"""

"""Reports over many runs: ``write_report(runs_dir)`` writes ``report.html`` and ``report.md``.

Modules: ``runs`` (finding and reading run folders), ``figures`` (comparison plots), ``document``
(blocks rendered as self-contained HTML or as Markdown), ``build`` (the report's sections).
"""

from __future__ import annotations

from fastnn.reporting.build import WrittenReport, write_report
from fastnn.reporting.runs import ReportError, RunRecord, find_runs

__all__ = ["ReportError", "RunRecord", "WrittenReport", "find_runs", "write_report"]

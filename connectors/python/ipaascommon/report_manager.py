"""``StandardReport``: a minimal stand-in for PowerFlow's step reports.

stepflow has no reports page. A report here is a set of sections, each an
ordered set of columns (lists of values). ``save()`` logs a text rendering of
it and stores it in the application cache under ``report_<report_id>``, so
another step (or a CacheRead) can fetch it. Links of the form
``https://<host>/reports/<report_id>`` do not resolve under stepflow.
"""

import logging
import time
import uuid

_log = logging.getLogger("ipaas_logger")


class StandardReport:
    """``StandardReport(report_name, application_name, section_name, ...)``.

    Extra positional or keyword arguments PowerFlow accepts (such as the
    trailing boolean seen in shipped steps) are kept in ``options`` and not
    interpreted.
    """

    def __init__(self, report_name, application_name=None, section_name="default", *args, **kwargs):
        self.report_name = str(report_name)
        self.application_name = application_name
        self.default_section = section_name or "default"
        self.options = {"args": list(args), **kwargs}
        self.created = time.time()
        self.report_id = f"{application_name or 'app'}-{self.report_name}-{uuid.uuid4().hex[:12]}"
        self.sections = {self.default_section: {}}

    def _section(self, data_key):
        return self.sections.setdefault(data_key or self.default_section, {})

    def add_column(self, name, data_key=None, column_data=None):
        """Adds (or extends) column ``name`` in section ``data_key`` with the values ``column_data``."""
        col = self._section(data_key).setdefault(str(name), [])
        if column_data is not None:
            col.extend(column_data if isinstance(column_data, (list, tuple)) else [column_data])
        return col

    def add_row(self, column, value, data_key=None):
        """Appends one ``value`` to ``column`` in section ``data_key``."""
        self._section(data_key).setdefault(str(column), []).append(value)

    def to_dict(self):
        return {"report_id": self.report_id, "report_name": self.report_name,
                "application_name": self.application_name, "created": self.created,
                "sections": self.sections}

    def to_text(self):
        lines = [f"Report {self.report_name} ({self.report_id})"]
        for section, columns in self.sections.items():
            if not columns:
                continue
            lines.append(f"[{section}]")
            names = list(columns)
            lines.append(" | ".join(names))
            for i in range(max(len(v) for v in columns.values())):
                lines.append(" | ".join(str(columns[n][i]) if i < len(columns[n]) else ""
                                        for n in names))
        return "\n".join(lines)

    def __str__(self):
        return self.to_text()

    def save(self, ttl=None):
        """Logs the report and stores it in the cache under ``report_<report_id>``; returns the id."""
        from ipaascommon.ipaas_manager import IpaasContentManager

        _log.info("%s", self.to_text())
        IpaasContentManager().save_to_cache(f"report_{self.report_id}", self.to_dict(), ttl)
        return self.report_id

    save_report = save

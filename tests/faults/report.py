"""Print the fault runs' counts tables at the end of the test session (also under xdist: the
table travels in the report's ``user_properties`` to the controller, which prints it)."""

from __future__ import annotations

_tables: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if report.when == "call":
        _tables.extend(value for name, value in report.user_properties if name == "fault_table")


def pytest_terminal_summary(terminalreporter) -> None:
    for table in _tables:
        terminalreporter.write_sep("-", "fault injection counts")
        terminalreporter.write_line(table)

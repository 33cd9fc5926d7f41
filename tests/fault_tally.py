"""A pytest plugin that tallies the fault suite: `pytest -m fault` ends with a table of each fault class,
the cases tried, and how many were handled as promised; `--fault-table=FILE` also writes it as Markdown.

A test joins the suite with `@pytest.mark.fault("class")`. It counts as one case, or as the examples
Hypothesis ran through it, or as the number it reports with `record_property("fault_cases", n)` when one
test drives many cases (one `digitlab predict` over a folder of broken images). A failed test's cases
count as tried, never as handled, except a failed Hypothesis test's, where only the examples that failed
(shrinking replays included) count as not handled.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis.errors import UnsatisfiedAssumption

CASES_PROPERTY = "fault_cases"
FAILED_PROPERTY = "fault_failed_cases"
_tally_key = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fault-table", metavar="FILE", help="write the fault suite's tally to FILE as Markdown")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(kind): a test of the fault suite (issue 8); kind names the fault class")
    config.stash[_tally_key] = defaultdict(lambda: {"tests": 0, "tried": 0, "handled": 0})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Count the examples Hypothesis runs by wrapping the inner test it calls for each one."""
    handle = getattr(getattr(item, "obj", None), "hypothesis", None)
    if item.get_closest_marker("fault") is None or handle is None:
        return (yield)
    inner = handle.inner_test
    examples, failed = [0], [0]

    @functools.wraps(inner)
    def counted(*args, **kwargs):
        examples[0] += 1
        try:
            return inner(*args, **kwargs)
        except UnsatisfiedAssumption:  # assume() turning an example down, not a failure
            raise
        except Exception:
            failed[0] += 1
            raise

    handle.inner_test = counted
    try:
        return (yield)
    finally:
        handle.inner_test = inner
        item.user_properties += [(CASES_PROPERTY, examples[0]), (FAILED_PROPERTY, failed[0])]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    marker = item.get_closest_marker("fault")
    if marker is None or report.when != "call" and not (report.when == "setup" and report.failed):
        return report
    properties = dict(item.user_properties)
    cases = properties.get(CASES_PROPERTY) or 1
    row = item.config.stash[_tally_key][marker.args[0]]
    row["tests"] += 1
    row["tried"] += cases
    if report.passed:
        row["handled"] += cases
    elif properties.get(FAILED_PROPERTY):
        row["handled"] += max(0, cases - properties[FAILED_PROPERTY])
    return report


def fault_table(tally: dict) -> str:
    lines = ["| fault class | tests | cases tried | handled as promised |", "| --- | ---: | ---: | ---: |"]
    for kind in sorted(tally):
        row = tally[kind]
        lines.append(f"| {kind} | {row['tests']} | {row['tried']:,} | {row['handled']:,} |")
    total = {key: sum(row[key] for row in tally.values()) for key in ("tests", "tried", "handled")}
    lines.append(f"| **all** | {total['tests']} | {total['tried']:,} | {total['handled']:,} |")
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    tally = config.stash[_tally_key]
    if not tally:
        return
    table = fault_table(tally)
    terminalreporter.write_sep("=", "fault suite")
    terminalreporter.write(table)
    if config.getoption("--fault-table"):
        Path(config.getoption("--fault-table")).write_text(table)

"""Rule authors' mistakes get a message that suggests the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_ux.conftest import evflow, write_rules


def _validate(home: Path, text: str) -> str:
    write_rules(home, text)
    proc = evflow(["rules", "validate"], home)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    return proc.stdout + proc.stderr


RULE = """\
version: 1
rules:
  - name: r
    on: a
{extra}
    then:
      - emit: b
"""


@pytest.mark.parametrize(
    ("zone", "suggestion"),
    [("Europe/Berln", "Europe/Berlin"), ("berlin", "Europe/Berlin"), ("asia/seoul", "Asia/Seoul")],
)
def test_unknown_time_zone_did_you_mean(home: Path, zone: str, suggestion: str) -> None:
    text = _validate(home, RULE.format(extra=f"    active: {{from: 2020-01-01, timezone: {zone}}}"))
    assert f"unknown timezone '{zone}'" in text and f"did you mean '{suggestion}'" in text, text
    text = _validate(home, f"version: 1\ndefaults:\n  timezone: {zone}\n")
    assert f"did you mean '{suggestion}'" in text, text


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 25 * * *", "hour 25: out of range 0-23"),
        ("61 * * * *", "minute 61: out of range 0-59"),
        ("0 0 32 * *", "day-of-month 32: out of range 1-31"),
        ("0 0 * 13 *", "month 13: out of range 1-12"),
        ("0 0 * * 8", "day-of-week 8: out of range 0-7"),
        ("0 9-25 * * *", "hour 25: out of range 0-23"),
    ],
)
def test_cron_field_out_of_range_names_the_field(home: Path, cron: str, message: str) -> None:
    text = _validate(home, RULE.format(extra=f'    active: {{cron: "{cron}"}}'))
    assert message in text, text
    schedule = f'version: 1\nschedules:\n  - name: s\n    cron: "{cron}"\n    emit: tick\n'
    assert message in _validate(home, schedule)


@pytest.mark.parametrize(
    ("expr", "hint"),
    [
        ("data.a > 1 and data.b < 2", "&&"),
        ("data.a > 1 or data.b < 2", "||"),
        ("data.plan = 'pro'", "=="),
        ("not has(data.x)", "!"),
    ],
)
def test_cel_python_habits_get_a_hint(home: Path, expr: str, hint: str) -> None:
    text = _validate(home, RULE.format(extra=f'    if: "{expr}"'))
    assert f"use {hint}" in text, text


def test_yaml_indentation_error_in_words(home: Path) -> None:
    text = _validate(
        home,
        "version: 1\nrules:\n  - name: r\n    on: a\n   then:\n      - emit: b\n",
    )
    assert "<block end>" not in text and "expected <" not in text, text
    assert "indent" in text.lower(), text
    assert "r.yaml:5:" in text, text


def test_yaml_unclosed_quote_in_words(home: Path) -> None:
    text = _validate(home, 'version: 1\nrules:\n  - name: "r\n    on: a\n')
    assert "<" not in text.split("error:", 1)[1].split("\n")[0] or "quote" in text.lower(), text


@pytest.mark.parametrize("expr", ["data.plan", "1 + 2", "'yes'", "data.items.size()"])
def test_if_must_be_boolean(home: Path, expr: str) -> None:
    text = _validate(home, RULE.format(extra=f'    if: "{expr}"'))
    assert "bool" in text, text
    assert "r.yaml:5:" in text, text


@pytest.mark.parametrize(
    "expr", ["data.plan == 'pro'", "has(data.x)", "data.a > 1 && data.b < 2", "true",
             "data.tags.exists(t, t == 'x')", "data.name.startsWith('a')", "!has(data.x)"]
)  # fmt: skip
def test_boolean_ifs_stay_valid(home: Path, expr: str) -> None:
    write_rules(home, RULE.format(extra=f'    if: "{expr}"'))
    proc = evflow(["rules", "validate"], home)
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""``--format github`` annotations escape as GitHub's toolkit does (issue 14).

The oracle is the escaping of ``@actions/core`` (packages/core/src/command.ts): the message
escapes ``%``, CR and LF; properties (``file=``, ``title=``) escape those and ``:`` and ``,`` too,
since those would end the property.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def unescape_property(text: str) -> str:
    for code, ch in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(code, ch)
    return text


def parse(line: str) -> tuple[str, dict[str, str], str]:
    """A workflow command as the runner reads it: ``::name k=v,k=v::message``."""
    assert line.startswith("::"), line
    head, sep, message = line[2:].partition("::")
    assert sep, line
    name, _, props = head.partition(" ")
    fields = dict(p.split("=", 1) for p in props.split(",") if p)
    return name, {k: unescape_property(v) for k, v in fields.items()}, message


NAMES = ["a,b.yaml", "c:d.yaml", "100%.yaml", "new\nline.yaml", "plain.yaml"]


def test_rules_validate_escapes_file_names(project: Path) -> None:
    folder = project / "rules"
    folder.mkdir()
    for name in NAMES:
        (folder / name).write_text("version: 2\n")
    result = run_cli(["rules", "validate", "--format", "github"])
    assert result.exit_code == 3
    lines = [line for line in result.stdout.split("\n") if line.startswith("::")]
    assert len(lines) == len(NAMES), result.stdout
    files = set()
    for line in lines:
        name, props, message = parse(line)
        assert name == "error"
        assert set(props) >= {"file", "line", "col"}, props
        files.add(Path(props["file"]).name)
        raw_file = line.split("file=", 1)[1].split(",line=", 1)[0]
        assert raw_file == escape_property(props["file"])
        assert "version" in message
    assert files == set(NAMES)


def test_messages_escape_percent_and_newlines(project: Path) -> None:
    folder = project / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(
        "version: 1\nrules:\n  - name: r\n    on: a\n    if: 'data.x == \"100%\" &&'\n"
        "    then: [{emit: b}]\n"
    )
    result = run_cli(["rules", "validate", "--format", "github"])
    assert result.exit_code == 3
    for line in result.stdout.splitlines():
        _, _, message = parse(line)
        assert "\r" not in message
        assert "%" not in message.replace("%25", "").replace("%0A", "").replace("%0D", "")


def test_rule_test_failures_escape_file_names(project: Path) -> None:
    folder = project / "rules"
    (folder / "tests").mkdir(parents=True)
    (folder / "r.yaml").write_text(
        "version: 1\nrules:\n  - name: r\n    on: a\n    then: [{emit: b}]\n"
    )
    case = (
        "tests:\n  - name: 'fails, always: 100%'\n    given:\n      - {type: a}\n"
        "    expect:\n      events:\n        - {type: not-b}\n"
    )
    (folder / "tests" / "x,y:z.yaml").write_text(case)
    result = run_cli(["rules", "test", "--format", "github"])
    assert result.exit_code == 3, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert lines, result.stdout
    for line in lines:
        _, props, _ = parse(line)
        assert Path(props["file"]).name == "x,y:z.yaml", line
        if "title" in props:
            assert line.split("title=", 1)[1].split("::", 1)[0] == escape_property(props["title"])

"""`tier check` (engine/check.py): every problem at once, on the right line, each with a fix.

Three layers: a deliberately broken fixture with one problem of each kind (its marker comments
name the expected code on the expected line, and *nothing else* may be reported — a false
positive fails too); small rulesets that pin the subtle parts of the table analysis (whole
numbers, finite score sets, blanks, per-combination gaps, parameters); and a property test that
compares the analysis of random decision tables with brute-force evaluation, because the one
thing a checker must never do is report a gap, overlap or dead row that is not there.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import expr as ex
from engine.api import check_ruleset as api_check_ruleset
from engine.check import CODES, check_ruleset
from engine.errors import Problem
from engine.ruleset import available_rulesets, read_ruleset

ROOT = Path(__file__).resolve().parent.parent
BROKEN = ROOT / "tests" / "fixtures" / "broken.yaml"
_MARKER = re.compile(r"^\s*[^#\s].*#\s+([a-z][a-z, -]*)")


def _markers(path: Path) -> set[tuple[int, str]]:
    """(line, code) for every `# code[, code]` comment after YAML content."""
    found = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = _MARKER.match(line)
        if match:
            found |= {(number, word) for word in re.split(r"[,\s]+", match.group(1)) if word in CODES}
    return found


def _check_text(tmp_path: Path, body: str, name: str = "r.yaml") -> list[Problem]:
    """Check HEADER + the dedented body; line 4 is the body's (empty) first line."""
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body), encoding="utf-8")
    return check_ruleset(path)


def _codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


HEADER = """\
id: t
version: "1"
title: t
"""


# =========================================================================== the broken fixture
def test_broken_fixture_reports_each_kind_exactly_on_its_marked_line() -> None:
    problems = check_ruleset(BROKEN)
    expected = _markers(BROKEN)
    got = {(p.line, p.code) for p in problems}
    assert got == expected, "\n".join(p.format() for p in problems)


def test_broken_fixture_covers_every_code_the_issue_names() -> None:
    wanted = {"unknown-field", "unknown-name", "type", "syntax", "use-before-define", "cycle", "unreachable",
              "gap", "overlap", "enum-value", "unused-param", "unknown-output", "tier-column"}
    assert wanted <= {code for _line, code in _markers(BROKEN)}


def test_every_problem_has_a_fix_a_file_and_a_line() -> None:
    for problem in check_ruleset(BROKEN):
        assert problem.fix.strip(), problem
        assert problem.file == str(BROKEN)
        assert problem.line, problem


def test_severities_unused_param_is_a_warning_and_the_rest_errors() -> None:
    problems = check_ruleset(BROKEN)
    assert {p.severity for p in problems if p.code == "unused-param"} == {"warning"}
    assert {p.severity for p in problems if p.code != "unused-param"} == {"error"}


def test_structural_problems_come_first() -> None:
    problems = check_ruleset(BROKEN)
    _definition, structural = read_ruleset(BROKEN)
    assert structural and problems[:len(structural)] == structural


@pytest.mark.parametrize(("code", "fragment", "fix_fragment"), [
    ("gap", "(5000, 10000]", "catch-all"),
    ("overlap", "score in [50, 59]", "disjoint"),
    ("unknown-name", "'montly_sales'", "did you mean 'monthly_sales'"),
    ("enum-value", "'Nroth'", "did you mean 'North'"),
    ("cycle", "LOOP-X → LOOP-Y → LOOP-X", "break the loop"),
    ("use-before-define", "'bonus'", "move decision LATE above EARLY"),
    ("type", "cannot compare a date with a number", "same kind"),
    ("syntax", "'score >> 3'", "expression"),
    ("unknown-output", "'ghost'", "remove the output"),
])
def test_messages_name_the_thing_and_the_fix(code: str, fragment: str, fix_fragment: str) -> None:
    problems = [p for p in check_ruleset(BROKEN) if p.code == code]
    assert any(fragment in p.message and fix_fragment in p.fix for p in problems), problems


def test_unreachable_reports_both_the_contradiction_and_the_shadowed_row() -> None:
    messages = [p.message for p in check_ruleset(BROKEN) if p.code == "unreachable"]
    assert any("SALES-c" in m and "no possible value" in m for m in messages)
    assert any("ORDER-b" in m and "ORDER-a" in m for m in messages)


def test_api_and_definition_inputs_agree() -> None:
    by_path = check_ruleset(BROKEN)
    definition, _structural = read_ruleset(BROKEN)
    assert definition is not None
    assert check_ruleset(definition) == by_path  # re-reads the unchanged file for structure
    assert api_check_ruleset(str(BROKEN)) == by_path


def test_unloadable_file_gives_only_the_loader_problem(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, "id: [unclosed\n")
    assert _codes(problems) == ["yaml"]


# =========================================================================== CLI
def test_cli_check_broken_exits_1_and_prints_each_problem_with_file_and_line() -> None:
    run = subprocess.run([sys.executable, "-m", "engine.cli", "check", str(BROKEN)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    for line, code in _markers(BROKEN):
        assert any(f"{BROKEN}:{line}:" in text and f"[{code}]" in text for text in lines), (line, code, run.stdout)
    assert "error(s)" in run.stderr


def test_cli_check_clean_ruleset_exits_0() -> None:
    assert "credit" in available_rulesets()
    run = subprocess.run([sys.executable, "-m", "engine.cli", "check", "credit"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


# =========================================================================== shipped rulesets
SHIPPED = sorted((ROOT / "rulesets").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_rulesets_have_no_errors(path: Path) -> None:
    errors = [p for p in check_ruleset(path) if p.severity == "error"]
    assert not errors, "\n".join(p.format() for p in errors)


# =========================================================================== table analysis
def test_integer_input_with_adjacent_whole_number_bands_has_no_gap(tmp_path: Path) -> None:
    # GR-4 style: 0 / 1–90 / 91–270 / 271–360 / ≥361 leaves only non-integers uncovered.
    problems = _check_text(tmp_path, """
        inputs:
          - {key: overdue_days, type: integer, min: 0, default: 0}
        decisions:
          - id: D
            rules:
              - {id: a, when: "overdue_days = 0", then: {c: 正常类}}
              - {id: b, when: "overdue_days >= 1 and overdue_days <= 90", then: {c: 关注类}}
              - {id: c, when: "overdue_days in [91..270]", then: {c: 次级类}}
              - {id: d, when: "overdue_days >= 271 and overdue_days <= 360", then: {c: 可疑类}}
              - {id: e, when: "overdue_days >= 361", then: {c: 损失类}}
        outputs: [{key: c, tier: true}]
        """)
    assert problems == []


def test_number_input_with_the_same_bands_has_real_gaps(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, min: 0, required: true}
        decisions:
          - id: D
            rules:
              - {id: a, when: "x = 0", then: {c: z}}
              - {id: b, when: "x >= 1 and x <= 90", then: {c: y}}
        outputs: [{key: c, tier: true}]
        """)
    gaps = [p for p in problems if p.code == "gap"]
    assert len(gaps) == 1
    assert "(0, 1) and (90, ∞)" in gaps[0].message and gaps[0].line == 8


def test_score_set_from_literals_is_a_finite_set_not_a_range(tmp_path: Path) -> None:
    # total = sales + payment can only be 30..100 in steps of 10: `total >= 80` / `total in [60..79]`
    # / `total < 60` leaves (79, 80) uncovered, which no possible total falls in.
    problems = _check_text(tmp_path, """
        inputs:
          - {key: s, type: number, required: true}
          - {key: d, type: number, required: true}
        decisions:
          - id: S
            rules:
              - {id: s1, when: "s >= 20000", then: {sales: 70}}
              - {id: s2, when: "s < 20000", then: {sales: 30}}
          - id: P
            rules:
              - {id: p1, when: "d <= 30", then: {pay: 30}}
              - {id: p2, when: "d > 30", then: {pay: 0}}
          - id: T
            compute: {total: "sales + pay"}
          - id: G
            rules:
              - {id: g1, when: "total >= 80", then: {grade: A}}
              - {id: g2, when: "total in [60..79]", then: {grade: B}}
              - {id: g3, when: "total = 30", then: {grade: C}}
        outputs: [{key: grade, tier: true}]
        """)
    assert [p.code for p in problems if p.severity == "error"] == [], problems
    # … but dropping the row for 30 leaves a possible total uncovered:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: s, type: number, required: true}
        decisions:
          - id: S
            rules:
              - {id: s1, when: "s >= 20000", then: {sales: 70}}
              - {id: s2, when: "s < 20000", then: {sales: 30}}
          - id: G
            rules:
              - {id: g1, when: "sales >= 60", then: {grade: A}}
              - {id: g2, when: "sales > 50 and sales < 60", then: {grade: B}}
        outputs: [{key: grade, tier: true}]
        """)
    gaps = [p for p in problems if p.code == "gap"]
    assert len(gaps) == 1 and "{30}" in gaps[0].message
    assert "(50, 60)" not in gaps[0].message  # no possible value there: not a gap
    unreachable = [p for p in problems if p.code == "unreachable"]
    assert [p.line for p in unreachable] == [15], problems  # g2: sales is never in (50, 60)


def test_gap_per_boolean_combination(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, min: 0, max: 100, required: true}
          - {key: vip, type: boolean, default: false}
        decisions:
          - id: D
            rules:
              - {id: a, when: "vip and x >= 50", then: {c: A}}
              - {id: b, when: "vip = false and x >= 0", then: {c: B}}
              - {id: c, when: "vip and x < 40", then: {c: C}}
        outputs: [{key: c, tier: true}]
        """)
    gaps = [p for p in problems if p.code == "gap"]
    assert len(gaps) == 1
    assert "[40, 50)" in gaps[0].message and "when vip = true" in gaps[0].message


def test_catch_all_row_means_no_gap_and_shadows_later_rows(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, required: true}
        decisions:
          - id: D
            rules:
              - {id: a, when: "x > 10", then: {c: A}}
              - {id: b, then: {c: B}}
              - {id: c, when: "x < 0", then: {c: C}}
        outputs: [{key: c, tier: true}]
        """)
    assert [(p.code, p.line) for p in problems] == [("unreachable", 12)]
    assert "rule b has no condition" in problems[0].message


def test_collect_gap_is_a_warning_and_rows_are_not_shadowed(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, required: true}
        decisions:
          - id: D
            hit: collect
            rules:
              - {id: a, when: "x > 10", then: {c: A}}
              - {id: b, when: "x > 20", then: {c: B}}
        outputs: [{key: c, tier: true}]
        """)
    assert [(p.code, p.severity) for p in problems] == [("gap", "warning")]
    assert "(-∞, 10]" in problems[0].message


def test_opaque_rows_never_produce_claims(tmp_path: Path) -> None:
    # `or`, arithmetic and calls are not understood: no gap (row b might cover it), no dead row.
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, required: true}
          - {key: y, type: number, required: true}
        decisions:
          - id: D
            rules:
              - {id: a, when: "x > 10", then: {c: A}}
              - {id: b, when: "abs(x) > y or x * 2 < y", then: {c: B}}
              - {id: c, when: "x > 5 and x + y > 3", then: {c: C}}
        outputs: [{key: c, tier: true}]
        """)
    assert problems == []


def test_opaque_part_still_bounds_a_gap(tmp_path: Path) -> None:
    # Row b can only match x < 0 whatever y is, so (… 10] minus that is a certain gap.
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, required: true}
          - {key: y, type: number, required: true}
        decisions:
          - id: D
            rules:
              - {id: a, when: "x > 10", then: {c: A}}
              - {id: b, when: "x < 0 and abs(y) > 1", then: {c: B}}
        outputs: [{key: c, tier: true}]
        """)
    gaps = [p for p in problems if p.code == "gap"]
    assert len(gaps) == 1 and "[0, 10]" in gaps[0].message


def test_not_of_a_name_that_may_be_blank_is_not_its_complement(tmp_path: Path) -> None:
    # `not flag` also matches a blank flag, which `flag = false` does not: b is reachable.
    body = """
        inputs:
          - {key: flag, type: boolean%s}
        decisions:
          - id: D
            rules:
              - {id: a, when: "flag = false", then: {c: A}}
              - {id: b, when: "not flag", then: {c: B}}
        outputs: [{key: c, tier: true}]
        """
    assert _check_text(tmp_path, body % "") == []
    problems = _check_text(tmp_path, body % ", default: false")
    assert [(p.code, p.line) for p in problems] == [("unreachable", 11)]


def test_rows_on_a_value_that_may_be_blank_are_not_shadowed_by_rows_on_another(tmp_path: Path) -> None:
    # Rows a and b cover every non-blank x, but c still fires when x is blank.
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number}
          - {key: k, type: enum, values: [p, q], required: true}
        decisions:
          - id: D
            rules:
              - {id: a, when: "k = 'p' and x > 0", then: {c: A}}
              - {id: b, when: "k = 'p' and x <= 0", then: {c: B}}
              - {id: c, when: "k = 'p'", then: {c: C}}
              - {id: d, when: "k = 'q'", then: {c: D}}
        outputs: [{key: c, tier: true}]
        """)
    assert problems == []


def test_overlap_only_for_unique_tables_and_with_the_shared_interval(tmp_path: Path) -> None:
    body = """
        inputs:
          - {key: x, type: number, min: 0, required: true}
        decisions:
          - id: D
            hit: %s
            rules:
              - {id: a, when: "x <= 100", then: {c: A}}
              - {id: b, when: "x >= 100", then: {c: B}}
        outputs: [{key: c, tier: true}]
        """
    assert _check_text(tmp_path, body % "first") == []
    problems = _check_text(tmp_path, body % "unique")
    assert [(p.code, p.line) for p in problems] == [("overlap", 12)]
    assert "x in {100}" in problems[0].message


def test_overlap_ignores_intersections_outside_the_domain(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, min: 0, required: true}
        decisions:
          - id: D
            hit: unique
            rules:
              - {id: a, when: "x < 0", then: {c: A}}
              - {id: b, when: "x < 5", then: {c: B}}
              - {id: c, when: "x >= 5", then: {c: C}}
        outputs: [{key: c, tier: true}]
        """)
    assert [p.code for p in problems] == ["unreachable"]  # a is dead, but no overlap with b


def test_gap_after_binding_parameter_defaults(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        parameters:
          cut_low: {type: number, default: 5000}
          cut_high: {type: number, default: 10000}
        inputs:
          - {key: s, type: number, min: 0, required: true}
        decisions:
          - id: D
            rules:
              - {id: a, when: "s > cut_high", then: {c: A}}
              - {id: b, when: "s <= cut_low", then: {c: B}}
        outputs: [{key: c, tier: true}]
        """)
    assert [p.code for p in problems] == ["gap"]
    assert "values of 's' in (5000, 10000] match no row" in problems[0].message


def test_parameter_used_as_a_value_may_be_overridden_so_no_dead_row(tmp_path: Path) -> None:
    # With weight 0.5 the score is at least 30 and `score < 20` is dead — but a caller may pass
    # another weight, so the row is not reported (gov_customer X1-6e).
    problems = _check_text(tmp_path, """
        parameters:
          weight: {type: number, default: 0.5, min: 0, max: 1}
        inputs:
          - {key: x, type: number, min: 0, required: true}
        decisions:
          - id: P
            rules:
              - {id: p1, when: "x >= 10", then: {points: 100}}
              - {id: p2, when: "x < 10", then: {points: 60}}
          - id: S
            compute: {score: "points * weight"}
          - id: G
            rules:
              - {id: g1, when: "score >= 20", then: {grade: A}}
              - {id: g2, when: "score < 20", then: {grade: D}}
        outputs: [{key: grade, tier: true}]
        """)
    assert problems == []


def test_text_fact_compared_with_a_value_it_never_takes_is_unreachable(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, required: true}
        decisions:
          - id: G
            rules:
              - {id: g1, when: "x >= 80", then: {grade: A}}
              - {id: g2, then: {grade: B}}
          - id: V
            rules:
              - {id: v1, when: "grade = 'A'", then: {visit: 每月}}
              - {id: v2, when: "grade = 'B'", then: {visit: 每季度}}
              - {id: v3, when: "grade = 'D'", then: {visit: 每年}}
        outputs: [{key: grade, tier: true}, {key: visit}]
        """)
    assert [(p.code, p.line) for p in problems] == [("unreachable", 16)]
    assert "'A', 'B'" in problems[0].message


# =========================================================================== names, order, types
def test_compute_order_inside_one_decision(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, required: true}
        decisions:
          - id: C
            compute:
              b: "a + 1"
              a: "x * 2"
              c: "c + 1"
        outputs: [{key: b, tier: true}, {key: a}]
        """)
    assert [(p.code, p.line) for p in problems] == [("use-before-define", 10), ("cycle", 12)]
    assert "move `a` above `b`" in problems[0].fix


def test_table_reading_its_own_output_is_a_cycle(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, required: true}
        decisions:
          - id: D
            rules:
              - {id: a, when: "x > 1", then: {c: A}}
              - {id: b, when: "c = 'A'", then: {c: B}}
              - {id: z, then: {c: Z}}
        outputs: [{key: c, tier: true}]
        """)
    assert [(p.code, p.line) for p in problems] == [("cycle", 11)]


def test_three_decision_cycle_names_the_whole_path(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, required: true}
        decisions:
          - {id: A, compute: {a: "c + x"}}
          - {id: B, compute: {b: "a + 1"}}
          - {id: C, compute: {c: "b + 1"}}
        outputs: [{key: a, tier: true}]
        """)
    cycles = [p for p in problems if p.code == "cycle"]
    assert len(cycles) == 1 and "A → C → B → A" in cycles[0].message and cycles[0].line == 8
    assert "use-before-define" not in _codes(problems)


def test_names_clashes_and_redefinitions(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        parameters:
          rate: {type: number, default: 1}
        inputs:
          - {key: x, type: number, required: true}
          - {key: d, type: date}
          - {key: note_text, type: text}
        checks:
          - {code: "INVALID:d", at: d, fails_when: "d > grade"}
        decisions:
          - {id: A, compute: {x: "rate + 1"}}
          - {id: B, compute: {y: "x + rate"}}
          - {id: C, compute: {y: "x - 1"}}
          - id: D
            rules:
              - {id: d1, when: "x > 1", then: {grade: "=x"}}
              - {id: d2, then: {grade: low}}
              - {id: d3, when: "note_text < 'b'", then: {grade: mid}, note: "N={rate}{nope}"}
        outputs: [{key: grade, tier: true, type: date}, {key: y}]
        """)
    got = {(p.code, p.line) for p in problems}
    assert ("unknown-name", 12) in got  # a check cannot read a derived fact
    assert ("name-clash", 14) in got  # decision A overwrites input x
    assert ("redefined", 16) in got  # y set by B and C
    assert ("type", 20) in got  # grade is a number in d1 but text in d2
    assert ("type", 21) in got  # text compared with <
    assert ("unknown-name", 21) in got  # {nope} is no parameter
    assert ("type", 22) in got  # grade declared a date, set to a number
    assert "unused-param" not in _codes(problems)  # rate is used (also in a note template)


def test_syntax_error_and_unknown_function(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, required: true}
        decisions:
          - id: D
            rules:
              - {id: a, when: "x > (1", then: {c: A}}
              - {id: b, when: "sqrt(x) > 1", then: {c: B}}
              - {id: c, when: "x > 1", then: {c: "=x +"}}
        outputs: [{key: c, tier: true}]
        """)
    assert [(p.code, p.line) for p in problems] == [("syntax", 10), ("unknown-name", 11), ("syntax", 12)]


def test_condition_that_is_not_true_or_false(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: x, type: number, required: true}
        decisions:
          - id: D
            rules:
              - {id: a, when: "x + 1", then: {c: A}}
              - {id: b, then: {c: B}}
        outputs: [{key: c, tier: true}]
        """)
    assert [(p.code, p.line) for p in problems] == [("type", 10)]


def test_enum_default_and_in_list_values_are_checked(tmp_path: Path) -> None:
    problems = _check_text(tmp_path, """
        inputs:
          - {key: k, type: enum, values: [甲, 乙], default: 丙}
        decisions:
          - id: D
            rules:
              - {id: a, when: "k in ['甲', '丁']", then: {c: A}}
              - {id: b, then: {c: B}}
        outputs: [{key: c, tier: true}]
        """)
    assert [(p.code, p.line) for p in problems] == [("enum-value", 6), ("enum-value", 10)]


def test_unused_parameter_only_warns_and_strict_cli_fails(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(HEADER + textwrap.dedent("""
        parameters:
          spare: {type: number, default: 3}
        inputs:
          - {key: x, type: number, required: true}
        decisions:
          - {id: D, compute: {c: "x + 1"}}
        outputs: [{key: c, tier: true}]
        """), encoding="utf-8")
    problems = check_ruleset(path)
    assert [(p.code, p.severity) for p in problems] == [("unused-param", "warning")]
    normal = subprocess.run([sys.executable, "-m", "engine.cli", "check", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    strict = subprocess.run([sys.executable, "-m", "engine.cli", "check", "--strict", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert (normal.returncode, strict.returncode) == (0, 1)


# =========================================================================== property: no false claims
_SCRATCH = Path(tempfile.mkdtemp(prefix="tier-check-"))
_CONSTS = st.integers(min_value=-2, max_value=12)


@st.composite
def _atom(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["cmp", "cmp", "cmp", "range", "list", "flag", "notflag", "color", "opaque"]))
    if kind == "cmp":
        return f"x {draw(st.sampled_from(['<', '<=', '>', '>=', '=', '!=']))} {draw(_CONSTS)}"
    if kind == "range":
        low = draw(_CONSTS)
        high = low + draw(st.integers(0, 6))
        return (f"x {draw(st.sampled_from(['in', 'not in']))} {draw(st.sampled_from('[('))}{low}.."
                f"{high}{draw(st.sampled_from(')]'))}")
    if kind == "list":
        return f"x in [{', '.join(str(v) for v in draw(st.lists(_CONSTS, min_size=1, max_size=3)))}]"
    if kind == "flag":
        return "flag"
    if kind == "notflag":
        return "not flag"
    if kind == "color":
        return f"color {draw(st.sampled_from(['=', '!=']))} '{draw(st.sampled_from(['r', 'g']))}'"
    return f"abs(x - {draw(_CONSTS)}) > {draw(st.integers(0, 4))}"


@st.composite
def _condition(draw: st.DrawFn) -> str | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    atoms = draw(st.lists(_atom(), min_size=1, max_size=3))
    if len(atoms) > 1 and draw(st.integers(0, 5)) == 0:
        return " or ".join(atoms)
    return " and ".join(atoms)


@st.composite
def _table(draw: st.DrawFn) -> dict:
    return {
        "x_type": draw(st.sampled_from(["integer", "number"])),
        "x_blank": draw(st.booleans()),
        "flag_blank": draw(st.booleans()),
        "color_blank": draw(st.booleans()),
        "hit": draw(st.sampled_from(["first", "unique", "collect"])),
        "rules": draw(st.lists(_condition(), min_size=1, max_size=5)),
    }


def _write(spec: dict) -> Path:
    def optional(blank: bool, default: str) -> str:
        return "" if blank else f", default: {default}"

    rules = []
    for index, condition in enumerate(spec["rules"]):
        when = "" if condition is None else f'when: "{condition}", '
        rules.append(f"      - {{id: r{index}, {when}then: {{c: v{index}}}}}")
    text = "\n".join([
        HEADER.rstrip(),
        "inputs:",
        f"  - {{key: x, type: {spec['x_type']}, min: 0, max: 10{optional(spec['x_blank'], '0')}}}",
        f"  - {{key: flag, type: boolean{optional(spec['flag_blank'], 'false')}}}",
        f"  - {{key: color, type: enum, values: [r, g]{optional(spec['color_blank'], 'r')}}}",
        "decisions:",
        "  - id: D",
        f"    hit: {spec['hit']}",
        "    rules:",
        *rules,
        "outputs: [{key: c, tier: true}]",
        "",
    ])
    path = _SCRATCH / "prop.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _worlds(spec: dict, with_blanks: bool) -> list[dict]:
    step = Decimal(1) if spec["x_type"] == "integer" else Decimal("0.5")
    xs: list[object] = [step * k for k in range(int(10 / step) + 1)]
    flags: list[object] = [True, False]
    colors: list[object] = ["r", "g"]
    if with_blanks:
        xs += [None] if spec["x_blank"] else []
        flags += [None] if spec["flag_blank"] else []
        colors += [None] if spec["color_blank"] else []
    return [{"x": x, "flag": f, "color": c} for x in xs for f in flags for c in colors]


def _matches(condition: str | None, world: dict) -> bool:
    return condition is None or ex.eval_scalar(ex.parse_expression(condition), world) is True


_REGION = re.compile(r"values of 'x' in (.*?)(?: when (.*?))? match no row")


def _gap_claim(message: str):  # type: ignore[no-untyped-def]
    """A gap message → (x → inside the claimed region?, {name: value} of its combination)."""
    match = _REGION.search(message)
    assert match, message
    tests = []
    for part in match.group(1).split(" and "):
        part = part.replace(" (whole numbers)", "")
        if part.startswith("{"):
            points = {Decimal(v) for v in part.strip("{}").split(", ")}
            tests.append(lambda x, points=points: x in points)
            continue
        low_text, high_text = part[1:-1].split(", ")
        low = None if low_text == "-∞" else Decimal(low_text)
        high = None if high_text == "∞" else Decimal(high_text)
        low_closed, high_closed = part[0] == "[", part[-1] == "]"
        tests.append(lambda x, lo=low, hi=high, lc=low_closed, hc=high_closed: (
            (lo is None or x > lo or (lc and x == lo)) and (hi is None or x < hi or (hc and x == hi))))
    combo: dict[str, object] = {}
    for item in (match.group(2) or "").split(" and ") if match.group(2) else []:
        name, value = item.split(" = ")
        combo[name] = {"true": True, "false": False}.get(value, value.strip("'"))
    return (lambda x: any(test(x) for test in tests)), combo


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_table())
def test_table_claims_agree_with_brute_force(spec: dict) -> None:
    problems = check_ruleset(_write(spec))
    assert all(p.code in ("gap", "unreachable", "overlap") for p in problems), problems
    rules = spec["rules"]
    worlds = _worlds(spec, with_blanks=True)
    hits = [[_matches(c, w) for c in rules] for w in worlds]
    for problem in problems:
        if problem.code == "unreachable":
            index = int(re.search(r"rule r(\d+)", problem.message).group(1))  # type: ignore[union-attr]
            ordered = spec["hit"] != "collect"
            fires = any(h[index] and not (ordered and any(h[:index])) for h in hits)
            assert not fires, (problem.message, spec)
        elif problem.code == "overlap":
            first, second = (int(v) for v in re.findall(r"rules r(\d+) and r(\d+)", problem.message)[0])
            assert any(h[first] and h[second] for h in hits), (problem.message, spec)
        elif problem.code == "gap":
            inside, combo = _gap_claim(problem.message)
            claimed = [w for w in _worlds(spec, with_blanks=False)
                       if inside(w["x"]) and all(w[k] == v for k, v in combo.items())]
            assert claimed, (problem.message, spec)  # the region holds a possible value …
            for world in claimed:  # … and every value in it matches no row
                assert not any(_matches(c, world) for c in rules), (problem.message, world, spec)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["<", "<=", ">", ">=", "="]), _CONSTS), min_size=1, max_size=4),
       st.sampled_from(["integer", "number"]))
def test_gaps_of_single_comparisons_are_all_found(rows: list[tuple[str, int]], x_type: str) -> None:
    spec = {"x_type": x_type, "x_blank": False, "flag_blank": False, "color_blank": False, "hit": "first",
            "rules": [f"x {op} {value}" for op, value in rows]}
    problems = check_ruleset(_write(spec))
    plain = _worlds(spec, with_blanks=False)
    uncovered = any(not any(_matches(c, w) for c in spec["rules"]) for w in plain)
    assert uncovered == any(p.code == "gap" for p in problems), (spec, problems)


# =========================================================================== real rulesets, mutated
CREDIT = ROOT / "rulesets" / "credit.yaml"
_CG_1C = ('''      - id: CG-1c
        when: "monthly_avg_sales > sales_40_points_above and monthly_avg_sales <= sales_50_points_above"
        then: {sales_score: 40}
''', "")


@pytest.mark.parametrize(("old", "new", "code", "fragment"), [
    (*_CG_1C, "gap", "values of 'monthly_avg_sales' in (5000, 10000] match no row"),
    ('"avg_collection_days <= collection_30_points_max_days"', '"avg_collection_days < collection_30_points_max_days"',
     "gap", "values of 'avg_collection_days' in {30}"),
    ('"total_score >= grade_b_min_score and total_score < grade_a_min_score"',
     '"total_score > grade_a_min_score and total_score < grade_b_min_score"', "unreachable", "it can only be 30, 40"),
    ("when: \"grade = 'C'\"\n        then: {visit_frequency", "when: \"grade = 'c'\"\n        then: {visit_frequency",
     "unreachable", "it can only be 'A', 'B', 'C'"),
], ids=["drop-CG-1c", "payment-boundary", "swapped-grade-bounds", "grade-typo"])
def test_mutated_credit_ruleset_is_caught(tmp_path: Path, old: str, new: str, code: str, fragment: str) -> None:
    text = CREDIT.read_text(encoding="utf-8")
    assert old in text, "credit.yaml changed shape: update this mutation so it still tests something"
    path = tmp_path / "credit.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    problems = check_ruleset(path)
    assert any(p.code == code and fragment in p.message for p in problems), "\n".join(p.format() for p in problems)


_ODD_VALUES = [None, [], {}, [1, 2], {"a": 1}, 0, -1, 1.5, True, "", "x", "=", "=x +", "and", "1..2", "{p}",
               "is_blank(", "2024-13-01", 10**30, "score", "grade = 'A'", "x in [1..2)", "abs(x) > 1"]


def _leaves(obj: object, path: tuple = ()) -> list[tuple]:
    found = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        found.append((*path, key))
        found.extend(_leaves(value, (*path, key)))
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(_ODD_VALUES)), min_size=1, max_size=4))
def test_check_never_raises_on_odd_values_anywhere(edits: list[tuple[int, object]]) -> None:
    import copy

    import yaml

    doc = yaml.safe_load(BROKEN.read_text(encoding="utf-8"))
    for pick, value in edits:
        paths = _leaves(doc)
        target = paths[pick % len(paths)]
        holder = doc
        for key in target[:-1]:
            holder = holder[key]
        holder[target[-1]] = copy.deepcopy(value)
    path = _SCRATCH / "odd.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    problems = check_ruleset(path)
    assert all(isinstance(p, Problem) and p.code for p in problems)

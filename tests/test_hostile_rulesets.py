"""Hostile rulesets: each is a clear RulesetError / Problem, and nothing in it ever runs.

PRODUCT §10: "a ruleset with a cycle or an expression that tries to reach Python … gets a clear
error and nothing else happens". The corpus is `tests/corpus/rulesets/*.yaml` (YAML tags that
construct Python objects, aliases, cycles, format-string notes) plus variants of `credit.yaml`
built here with a hostile expression in every place an expression may stand, and absurd sizes.

"Nothing runs" is checked two ways: canary files the payloads would create, and a Python audit
hook (PEP 578) in a child process that records every os.system / subprocess / exec / eval /
compile / import / pickle event while the hostile files are loaded, checked, compiled and used.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import engine
from engine.check import check_ruleset
from engine.compile import compile_ruleset
from engine.errors import ExpressionError, RulesetError
from engine.ruleset import MAX_FILE_BYTES, load_ruleset, read_ruleset

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "corpus" / "rulesets"
CREDIT = (ROOT / "rulesets" / "credit.yaml").read_text(encoding="utf-8")
CG_1A = 'when: "monthly_avg_sales >= sales_70_points_min"'
CANARY = "tierbook_canary"


def tier(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERBOOK_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], check=False, capture_output=True, text=True,
                           cwd=cwd, env=env, timeout=300)


def credit_with(old: str, new: str) -> str:
    assert CREDIT.count(old) == 1, old
    return CREDIT.replace(old, new)


def when(expression: str) -> str:
    return credit_with(CG_1A, "when: " + json.dumps(expression, ensure_ascii=False))


# (name, ruleset text, a fragment of the message that explains it)
EXPRESSIONS = [
    ("import-call", when(f"__import__('os').system('touch {CANARY}_import')"), "names may not start with '__'"),
    ("dunder-name", when("__builtins__ > 1"), "names may not start with '__'"),
    ("dunder-attribute", when("monthly_avg_sales.__class__ > 1"), "there is no attribute access"),
    ("attribute", when("monthly_avg_sales.real > 1"), "there is no attribute access"),
    ("open", when(f"open('{CANARY}_open', 'w') = 1"), "unknown function 'open'"),
    ("eval", when("eval('1') = 1"), "unknown function 'eval'"),
    ("exec", when("exec('import os') = 1"), "unknown function 'exec'"),
    ("getattr", when("getattr(monthly_avg_sales, 'real') = 1"), "unknown function 'getattr'"),
    ("globals", when("globals() = 1"), "unknown function 'globals'"),
    ("import-statement", when("import os"), "unexpected"),
    ("lambda", when("(lambda: 1)() = 1"), "':' is not part of the language"),
    ("comprehension", when("[c for c in 'ab'] = 1"), "unexpected"),
    ("indexing", when("monthly_avg_sales[0] > 1"), "indexing is not allowed"),
    ("f-string", when("f'{monthly_avg_sales}' = 'x'"), "unexpected"),
    ("semicolon", when("monthly_avg_sales > 1; import os"), "write one expression"),
    ("power", when("monthly_avg_sales ** 99999999 > 1"), "unexpected '*'"),
    ("backtick", when("`touch x` = 1"), "unexpected '`'"),
    ("ten-thousand-parens", when("(" * 10_000 + "1" + ")" * 10_000 + " = 1"), "expression is too long"),
    ("deep-parens", when("(" * 150 + "monthly_avg_sales" + ")" * 150 + " > 1"), "nested too deeply"),
    ("deep-not", when("not " * 1_000 + "true"), "nested too deeply"),
    ("deep-minus", when("-" * 1_000 + "monthly_avg_sales > 1"), "nested too deeply"),
    ("then-expression", credit_with("then: {sales_score: 70}", "then: {sales_score: \"=__import__('os')\"}"),
     "names may not start with '__'"),
    ("required-expression", credit_with('required: "not is_new_customer"', 'required: "is_new_customer.__bool__"'),
     "there is no attribute access"),
    ("default-expression", credit_with("default_expr: new_customer_default_collection_days",
                                       "default_expr: \"open('x')\""), "unknown function 'open'"),
    ("check-expression", credit_with('fails_when: "last_visit_date > as_of_date"',
                                     'fails_when: "system(\'touch x\')"'), "unknown function 'system'"),
]


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "text", "fragment"), EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_hostile_expression_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             name: str, text: str, fragment: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, name, text)
    definition = load_ruleset(path)  # structurally fine: the expression is only text
    with pytest.raises(RulesetError) as caught:
        compile_ruleset(definition)
    message = str(caught.value)
    assert fragment in message
    assert re.match(rf"{re.escape(str(path))}:\d+ ", message), "the message points at the file and line"
    problems = [p for p in check_ruleset(path) if p.severity == "error"]
    assert problems, "tier check reports it"
    assert any(fragment in p.message for p in problems), [p.format() for p in problems]
    assert all(p.line for p in problems)
    with pytest.raises(RulesetError):
        engine.evaluate(str(path), [{"评估日期": "2024-06-30", "月均销售额": "1"}])
    assert not list(tmp_path.glob(f"{CANARY}*"))


@pytest.mark.parametrize("expression", [
    "__import__('os')", "a.b", "open('x')", "lambda: 1", "x[0]", "(" * 10_000 + ")" * 10_000, "import os",
])
def test_expression_parser_refuses_directly(expression: str) -> None:
    from engine.expr import parse_expression

    with pytest.raises(ExpressionError) as caught:
        parse_expression(expression)
    assert str(caught.value) and "Traceback" not in str(caught.value)


# --------------------------------------------------------------------------- the static corpus
YAML_REFUSALS = {
    "python_object_apply.yaml": (3, "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    "python_object_new.yaml": (12, "python/object/new:subprocess.Popen"),
    "python_name.yaml": (3, "python/name:os.system"),
    "python_apply_eval.yaml": (8, "python/object/apply:builtins.eval"),
    "billion_laughs.yaml": (3, "YAML aliases (*name) are not allowed in rulesets"),
    "merge_key.yaml": (7, "YAML aliases (*name) are not allowed in rulesets"),
}


@pytest.mark.parametrize("name", sorted(YAML_REFUSALS))
def test_yaml_payloads_are_refused_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    line, fragment = YAML_REFUSALS[name]
    definition, problems = read_ruleset(CORPUS / name)
    assert definition is None
    assert [(p.line, p.code) for p in problems] == [(line, "yaml")]
    assert fragment in problems[0].message
    with pytest.raises(RulesetError, match=re.escape(fragment)):
        load_ruleset(CORPUS / name)
    assert check_ruleset(CORPUS / name) == problems
    assert not list(tmp_path.glob(f"{CANARY}*"))


@pytest.mark.parametrize("name", sorted(YAML_REFUSALS))
def test_yaml_payloads_cli(tmp_path: Path, name: str) -> None:
    source = tmp_path / "in.csv"
    source.write_text("评估日期\n2024-06-30\n", encoding="utf-8")
    run = tier("eval", str(CORPUS / name), str(source), "-o", str(tmp_path / "o.csv"), cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"tier: 规则集有错误 / ruleset {CORPUS / name} has 1 problem(s):")
    assert YAML_REFUSALS[name][1] in run.stderr
    checked = tier("check", str(CORPUS / name), cwd=tmp_path)
    assert checked.returncode == 1 and "[yaml]" in checked.stdout and "Traceback" not in checked.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"], "no output, no canary"


@pytest.mark.parametrize(("name", "cycle_line", "compile_fragment"), [
    ("cycle.yaml", 9, "unknown name 'b_flag'"),
    ("self_cycle.yaml", 10, "unknown name 'total'"),
])
def test_cycles(name: str, cycle_line: int, compile_fragment: str) -> None:
    problems = check_ruleset(CORPUS / name)
    cycles = [p for p in problems if p.code == "cycle"]
    assert cycles and cycles[0].line == cycle_line and cycles[0].fix
    with pytest.raises(RulesetError, match=compile_fragment):
        engine.compile(CORPUS / name)


def test_note_templates_are_not_format_strings() -> None:
    """`{days.__class__…}` in a note is literal text: no attribute lookup, no huge padding."""
    compiled = engine.compile(CORPUS / "format_string_note.yaml")
    frame = engine.evaluate(compiled, [{"评估日期": "2024-06-30"}, {"评估日期": "2024-06-30", "得分": "5"}])
    assert frame.loc[0, "notes"] == "DEFAULT:45:{days.__class__.__init__.__globals__}:{__import__}:{0}"
    assert frame.loc[1, "notes"] == "N:{days!r}:{days:>99999999}"
    codes = {p.code for p in check_ruleset(CORPUS / "format_string_note.yaml")}
    assert "unknown-name" in codes  # `tier check` flags the placeholders that name no parameter


# --------------------------------------------------------------------------- absurd sizes and shapes
def test_ten_megabyte_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(CREDIT + "\n# " + "x" * 10_000_000 + "\n", encoding="utf-8")
    started = time.perf_counter()
    definition, problems = read_ruleset(path)
    assert definition is None
    assert [p.code for p in problems] == ["too-large"]
    assert f"(limit {MAX_FILE_BYTES})" in problems[0].message
    with pytest.raises(RulesetError, match="too-large"):
        load_ruleset(path)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("text", [
    "a: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "a: " + "{b: " * 5_000 + "1" + "}" * 5_000 + "\n",
    "a:\n" + "".join("  " * i + "- \n" for i in range(1, 700)),
], ids=["flow-sequences", "flow-mappings", "block-sequences"])
def test_absurd_yaml_nesting(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, "deep", text)
    definition, problems = read_ruleset(path)
    assert definition is None and len(problems) == 1
    assert problems[0].code in ("too-deep", "yaml"), problems[0].format()
    assert check_ruleset(path) == problems


def test_thousands_of_rules_refused_quickly(tmp_path: Path) -> None:
    """Under the byte limit but 9,000 table rows: refused, and `tier check` stays quick."""
    rows = "".join(f'      - {{id: R{i}, when: "monthly_avg_sales >= {i * 10} and monthly_avg_sales < {i * 10 + 10}",'
                   f" then: {{sales_score: {i % 70}}}}}\n" for i in range(9_000))
    path = _write(tmp_path, "many", credit_with("    rules:\n      - id: CG-1a\n", "    rules:\n" + rows + "      - id: CG-1a\n"))
    assert path.stat().st_size < MAX_FILE_BYTES
    started = time.perf_counter()
    problems = check_ruleset(path)
    assert time.perf_counter() - started < 30
    assert problems[0].code == "too-large" and "9,004 rules (limit 500)" in problems[0].message
    with pytest.raises(RulesetError, match="too-large"):
        load_ruleset(path)


def test_ten_thousand_parens_cli_one_clear_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "parens", EXPRESSIONS[17][1])
    source = tmp_path / "in.csv"
    source.write_text("评估日期,月均销售额\n2024-06-30,1\n", encoding="utf-8")
    run = tier("eval", str(path), str(source), "-o", str(tmp_path / "o.csv"), cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert "expression is too long (20005 characters; the limit is 10000)" in line
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize(("text", "code", "fragment"), [
    ("id: " + "9" * 100_000 + "\n", "yaml", "YAML value cannot be read"),
    (CREDIT.replace("\nversion:", "\nid: credit\nversion:", 1), "duplicate-key", "key 'id' appears twice"),
    (credit_with("type: boolean", "type: enum\n    values: 5"), "structure", "values must be a list"),
    (credit_with("then: {sales_score: 70}", "then: {sales_score: [70]}"), "structure", "must be a plain value"),
    (credit_with("then: {sales_score: 70}", "then: {sales_score: 70}\n        note_at: 1.5"), "structure",
     "note_at must be text"),
    (credit_with('fails_when: "last_visit_date > as_of_date"', "fails_when: {a: 1}"), "structure",
     "fails_when must be text"),
    (credit_with("tier: true", 'tier: "no"'), "structure", "tier must be true or false"),
], ids=["huge-int", "duplicate-key", "values-not-list", "then-list", "note-at-number", "fails-when-map", "tier-text"])
def test_malformed_fields_are_problems_not_crashes(tmp_path: Path, text: str, code: str, fragment: str) -> None:
    """Found by fuzzing: each of these used to surface as a TypeError/ValueError past the loader."""
    path = _write(tmp_path, "bad", text)
    _definition, problems = read_ruleset(path)
    assert any(p.code == code and fragment in p.message for p in problems), [p.format() for p in problems]
    assert any(p.code == code for p in check_ruleset(path))
    with pytest.raises(RulesetError):
        load_ruleset(path)


# --------------------------------------------------------------------------- nothing runs: audit hook
AUDIT_SCRIPT = textwrap.dedent('''
    import json, sys
    WATCH = {"os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "exec",
             "compile", "import", "pickle.find_class", "marshal.loads", "ctypes.dlopen", "os.remove",
             "shutil.rmtree", "socket.connect", "urllib.Request"}
    seen, recording = [], [False]

    def hook(event, args):
        if recording[0] and event in WATCH:
            seen.append([event, repr(args)[:120]])

    sys.addaudithook(hook)
    import engine
    from engine.check import check_ruleset
    from engine.errors import TierError
    from engine.ruleset import read_ruleset
    rows = [{"评估日期": "2024-06-30", "月均销售额": "25,000", "平均回款天数": "20"}]
    for name in ("vector", "scalar", "rete"):  # warm up: every lazy import happens before recording
        engine.evaluate("credit", rows, engine=name, explain=True)
    check_ruleset("credit")
    recording[0] = True
    for path in sys.argv[1:]:
        read_ruleset(path)
        check_ruleset(path)
        for name in ("vector", "scalar", "rete"):
            try:
                engine.evaluate(path, rows, engine=name, explain=True)
            except TierError:
                pass
    recording[0] = False
    print(json.dumps(seen))
''')


def test_nothing_executes_audit_hook(tmp_path: Path) -> None:
    generated = [_write(tmp_path, name, text) for name, text, _fragment in EXPRESSIONS]
    files = [str(p) for p in sorted(CORPUS.glob("*.yaml"))] + [str(p) for p in generated]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERBOOK_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run([sys.executable, "-c", AUDIT_SCRIPT, *files], check=False, capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
    assert not list(tmp_path.glob(f"{CANARY}*"))

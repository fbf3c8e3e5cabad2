"""Ruleset files → `RulesetDef`: safe YAML with the line of every element, structural validation.

A ruleset is data an analyst edits (docs/DESIGN.md "Ruleset file format"). Loading never runs
code: the YAML loader is a `SafeLoader` that also refuses aliases (billion-laughs style blow-ups)
and records line numbers so every problem points at a line. All structural problems are
collected and reported together, so a broken file is fixed in one pass (STYLE §2.8).
Semantic analysis (names, types, gaps, overlaps) is `engine.check`'s job.
"""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from engine.errors import Problem, RulesetError

INPUT_TYPES = ("number", "fraction", "integer", "date", "boolean", "text", "enum")
PARAM_TYPES = ("number", "integer", "text", "boolean", "date")
OUTPUT_TYPES = ("number", "integer", "date", "text", "boolean")
HIT_POLICIES = ("first", "unique", "collect")
AGGREGATES = ("list", "sum", "count", "min", "max")
RESERVED_OUTPUTS = ("status", "errors", "notes", "fired_rules")
MAX_FILE_BYTES = 2_000_000
# Rows of one decision table and of the whole ruleset. The largest shipped table has 119 rows;
# the static checks compare rows pairwise, so a 9,000-row table under the byte limit would keep
# `tier check` busy for many minutes. Past these a table is generated, not edited: refuse it.
MAX_RULES_PER_DECISION = 500
MAX_RULES = 2_000
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")


# --------------------------------------------------------------------------- YAML with lines
class _Map(dict):
    """A mapping that remembers the line of itself and of each key."""

    line: int = 0
    key_lines: dict


class _Seq(list):
    line: int = 0


class _LineLoader(yaml.SafeLoader):
    """SafeLoader + line numbers; refuses aliases (never needed in a ruleset, a blow-up risk).

    It also records keys given twice in one mapping: plain YAML keeps the last silently, so a
    second `when:` or `then:` pasted into a rule would change what it does without a word.
    """

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        super().__init__(stream)
        self.duplicate_keys: list[tuple[object, int]] = []

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "YAML aliases (*name) are not allowed in rulesets", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        mapping = _Map(super().construct_mapping(node, deep=True))
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        for key_node, _value in node.value:
            try:
                key = self.construct_object(key_node, deep=True)
                if key in mapping.key_lines:
                    self.duplicate_keys.append((key, key_node.start_mark.line + 1))
                mapping.key_lines[key] = key_node.start_mark.line + 1
            except TypeError:
                pass
        return mapping

    def construct_sequence(self, node, deep=False):  # type: ignore[override]
        seq = _Seq(super().construct_sequence(node, deep=True))
        seq.line = node.start_mark.line + 1
        return seq


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_sequence)


def _line(obj: Any, key: Any = None) -> int | None:
    if key is not None and isinstance(obj, _Map) and key in obj.key_lines:
        return obj.key_lines[key]
    return getattr(obj, "line", None) or None


# --------------------------------------------------------------------------- definitions
@dataclass(frozen=True)
class Label:
    zh: str = ""
    en: str = ""

    def text(self) -> str:
        return self.zh or self.en


@dataclass(frozen=True)
class InputDef:
    key: str
    type: str
    zh: str = ""
    en: str = ""
    aliases: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    unit: str = ""
    min: Any = None
    max: Any = None
    required: bool | str = False
    default: Any = None
    default_expr: str | None = None
    blank_note: str | None = None
    description: str = ""
    line: int | None = None

    @property
    def headers(self) -> tuple[str, ...]:
        """Every header that names this input: key, Chinese, English and aliases."""
        names = [self.key, self.zh, self.en, *self.aliases]
        return tuple(dict.fromkeys(n for n in names if n))


@dataclass(frozen=True)
class ParamDef:
    key: str
    type: str
    default: Any
    zh: str = ""
    en: str = ""
    min: Any = None
    max: Any = None
    line: int | None = None


@dataclass(frozen=True)
class CheckDef:
    code: str
    at: str
    fails_when: str | None = None
    all_blank: tuple[str, ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class RuleDef:
    id: str
    when: str | None
    then: tuple[tuple[str, Any], ...]
    note: str | None = None
    note_at: str | None = None
    line: int | None = None
    then_lines: tuple[tuple[str, int | None], ...] = ()


@dataclass(frozen=True)
class DecisionDef:
    id: str
    title: Label
    hit: str  # first | unique | collect | compute
    aggregate: str | None
    rules: tuple[RuleDef, ...]
    line: int | None = None


@dataclass(frozen=True)
class OutputDef:
    key: str
    zh: str = ""
    en: str = ""
    type: str = "text"
    tier: bool = False
    line: int | None = None
    decimals: int = 0  # number outputs: at least this many decimals are shown (1.0, 24.0 as the spec writes)


@dataclass(frozen=True)
class ExampleDef:
    name: str
    input: Mapping[str, Any]
    expect: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    line: int | None = None


@dataclass(frozen=True)
class RulesetDef:
    id: str
    version: str
    title: Label
    source: str
    effective_date: str
    description: Label
    inputs: tuple[InputDef, ...]
    parameters: tuple[ParamDef, ...]
    checks: tuple[CheckDef, ...]
    decisions: tuple[DecisionDef, ...]
    outputs: tuple[OutputDef, ...]
    examples: tuple[ExampleDef, ...]
    path: str
    content_hash: str

    @property
    def tier_output(self) -> str:
        return next(o.key for o in self.outputs if o.tier)

    def input(self, key: str) -> InputDef:
        return next(i for i in self.inputs if i.key == key)

    def parameter(self, key: str) -> ParamDef:
        return next(p for p in self.parameters if p.key == key)


# --------------------------------------------------------------------------- finding files
def ruleset_dirs() -> list[Path]:
    """Where ruleset ids are looked up: $TIERBOOK_RULESETS (os.pathsep-separated), then the shipped ones."""
    dirs = [Path(p) for p in os.environ.get("TIERBOOK_RULESETS", "").split(os.pathsep) if p]
    shipped = Path(__file__).resolve().parent.parent / "rulesets"
    if shipped.is_dir():
        dirs.append(shipped)
    else:  # installed as a package (non-editable): rulesets/ is package data
        try:
            import rulesets as _pkg

            dirs.append(Path(_pkg.__file__).resolve().parent)
        except ImportError:
            pass
    return dirs


def available_rulesets() -> dict[str, Path]:
    """id → path of every ruleset file found (first directory wins)."""
    found: dict[str, Path] = {}
    for folder in ruleset_dirs():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def resolve_ruleset_path(ref: str | os.PathLike) -> Path:
    """A ruleset id (`credit`) or a file path → the file; unknown ids get a did-you-mean."""
    text = os.fspath(ref)
    candidate = Path(text)
    if candidate.suffix in (".yaml", ".yml") or os.sep in text or "/" in text:
        if not candidate.is_file():
            raise RulesetError(f"规则集文件不存在 / ruleset file not found: {text}")
        return candidate
    known = available_rulesets()
    if text in known:
        return known[text]
    close = difflib.get_close_matches(text, list(known), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise RulesetError(
        f"未知规则集 / unknown ruleset {text!r}.{hint} Known: {', '.join(sorted(known)) or '(none)'}"
    )


# --------------------------------------------------------------------------- loading
class _Collector:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int | None, code: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.file, line, code, message, fix))


def read_ruleset(path: str | os.PathLike) -> tuple[RulesetDef | None, list[Problem]]:
    """Load and structurally validate one file; never raises for content problems."""
    file = os.fspath(path)
    try:
        raw_bytes = Path(file).read_bytes()
    except OSError as exc:
        return None, [Problem(file, None, "unreadable", f"cannot read file: {exc}", "check the path")]
    if len(raw_bytes) > MAX_FILE_BYTES:
        return None, [Problem(file, None, "too-large", f"file is {len(raw_bytes)} bytes (limit {MAX_FILE_BYTES})",
                              "split the ruleset; a ruleset this large is not meant to be edited by hand")]
    try:
        text = raw_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [Problem(file, None, "encoding", f"not UTF-8: {exc}", "save the file as UTF-8")]
    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)  # a SafeLoader subclass: no Python objects are ever constructed
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        return None, [Problem(file, line, "yaml", f"YAML error: {getattr(exc, 'problem', None) or exc}",
                              "fix the YAML syntax at this line (plain tags only: no !!python objects)")]
    except RecursionError:
        return None, [Problem(file, None, "too-deep", "YAML nesting is too deep", "flatten the structure")]
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4,300 digits
        return None, [Problem(file, None, "yaml", f"YAML value cannot be read: {str(exc)[:200]}",
                              "write numbers with at most a few dozen digits")]
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(doc, dict):
        return None, [Problem(file, 1, "structure", "a ruleset file must be a YAML mapping",
                              "start with `id: ...`, `version: ...`")]
    col = _Collector(file)
    assert loader is not None  # set before get_single_data could return
    for key, line in loader.duplicate_keys:
        col.add(line, "duplicate-key", f"key {key!r} appears twice in the same mapping (YAML keeps only the last)",
                "delete one of the two entries")
    definition = _build(doc, col, file, hashlib.sha256(raw_bytes).hexdigest())
    # With problems the definition is a best effort (bad fields dropped) for `tier check`;
    # `load_ruleset` refuses it.
    return definition, col.problems


_LOADED: dict[tuple[str, str], RulesetDef] = {}  # (path, sha256 of the bytes) → definition


def load_ruleset(ref: str | os.PathLike) -> RulesetDef:
    """Load a ruleset by id or path; raise `RulesetError` listing every structural problem.

    Definitions are immutable and remembered by path and content hash: a caller that names the
    ruleset by id on every call (`engine.evaluate("credit", ...)`, Excel recalculation) pays for
    reading the bytes, not for parsing and validating the YAML again; an edited file has another
    hash and is loaded afresh.
    """
    path = resolve_ruleset_path(ref)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        digest = ""  # read_ruleset reports the unreadable file
    known = _LOADED.get((os.fspath(path), digest))
    if known is not None:
        return known
    definition, problems = read_ruleset(path)
    errors = [p for p in problems if p.severity == "error"]
    if errors or definition is None:
        lines = "\n".join(p.format() for p in errors)
        raise RulesetError(f"规则集有错误 / ruleset {os.fspath(path)} has {len(errors)} problem(s):\n{lines}", errors)
    if len(_LOADED) >= 256:
        _LOADED.clear()
    _LOADED[(os.fspath(path), definition.content_hash)] = definition  # the hash of the bytes it was built from
    return definition


def _label(value: Any, col: _Collector, line: int | None, what: str) -> Label:
    if value is None:
        return Label()
    if isinstance(value, str):
        return Label(zh=value)
    if isinstance(value, dict):
        unknown = set(value) - {"zh", "en"}
        if unknown:
            col.add(line, "unknown-field", f"{what}: unknown language key(s) {sorted(unknown)}", "use zh and en")
        return Label(zh=str(value.get("zh") or ""), en=str(value.get("en") or ""))
    col.add(line, "structure", f"{what} must be text or {{zh: ..., en: ...}}", "write e.g. title: {zh: 客户分级, en: Grading}")
    return Label()


def _check_fields(obj: dict, allowed: set[str], col: _Collector, what: str) -> None:
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"allowed fields: {', '.join(sorted(allowed))}"
            col.add(_line(obj, key), "unknown-field", f"{what}: unknown field {key!r}", fix)


def _scalar_text(value: Any) -> str:
    return "" if value is None else str(value)


_SCALARS = (str, int, float, bool, dt.date)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _text_field(obj: dict, name: str, col: _Collector, what: str, *, numbers: bool = False) -> str | None:
    """A field that must be text (an expression, a code, an input key): anything else is a problem.

    Structural validation is the only guard in front of `compile_ruleset`, so a list or a
    mapping where text belongs must stop here rather than surface as a TypeError later.
    """
    value = obj.get(name)
    if value is None or isinstance(value, str):
        return value
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    col.add(_line(obj, name) or _line(obj), "structure", f"{what}: {name} must be text, got {_show(value)}",
            f"write {name}: '...'")
    return None


def _scalar_list(obj: dict, name: str, col: _Collector, what: str) -> tuple[str, ...]:
    """A list of plain values (aliases, enum values, input keys) as trimmed text."""
    value = obj.get(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        col.add(_line(obj, name) or _line(obj), "structure", f"{what}: {name} must be a list, got {_show(value)}",
                f"{name}: [a, b]")
        return ()
    items = []
    for item in value:
        if isinstance(item, _SCALARS):
            items.append(str(item).strip())
        else:
            col.add(_line(value) or _line(obj, name), "structure",
                    f"{what}: each entry of {name} must be a plain value, got {_show(item)}", "")
    return tuple(items)


def _number_field(obj: dict, name: str, col: _Collector, what: str) -> int | float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    col.add(_line(obj, name) or _line(obj), "structure", f"{what}: {name} must be a number, got {_show(value)}", "")
    return None


def _scalar_field(obj: dict, name: str, col: _Collector, what: str) -> Any:
    value = obj.get(name)
    if value is None or isinstance(value, _SCALARS):
        return value
    col.add(_line(obj, name) or _line(obj), "structure",
            f"{what}: {name} must be a plain value (text, number, true/false, date), got {_show(value)}", "")
    return None


_TOP_FIELDS = {"id", "version", "title", "source", "effective_date", "description", "inputs", "parameters",
               "checks", "decisions", "outputs", "examples"}
_INPUT_FIELDS = {"key", "zh", "en", "aliases", "type", "values", "unit", "min", "max", "required", "default",
                 "default_expr", "blank_note", "description"}
_PARAM_FIELDS = {"type", "default", "zh", "en", "min", "max", "description", "unit"}
_CHECK_FIELDS = {"code", "at", "fails_when", "all_blank", "description"}
_DECISION_FIELDS = {"id", "title", "hit", "aggregate", "rules", "compute", "note", "note_at", "description"}
_RULE_FIELDS = {"id", "when", "then", "note", "note_at", "description"}
_OUTPUT_FIELDS = {"key", "zh", "en", "type", "tier", "description", "unit", "decimals"}
_EXAMPLE_FIELDS = {"name", "input", "expect", "params", "description"}


def _build(doc: dict, col: _Collector, file: str, content_hash: str) -> RulesetDef:
    _check_fields(doc, _TOP_FIELDS, col, "ruleset")
    rid = _scalar_text(doc.get("id"))
    if not _ID_RE.match(rid):
        col.add(_line(doc, "id"), "id", f"ruleset id {rid!r} is missing or not snake_case",
                "use lowercase letters, digits and _ (e.g. id: credit)")
    for required in ("version", "title"):
        if required not in doc:
            col.add(1, "missing-field", f"ruleset has no {required!r}", f"add `{required}: ...`")

    inputs = tuple(_build_input(item, col) for item in _seq(doc, "inputs", col, required=True))
    params = _build_params(doc.get("parameters"), col, _line(doc, "parameters"))
    checks = tuple(_build_check(item, col) for item in _seq(doc, "checks", col))
    decisions = tuple(_build_decision(item, col) for item in _seq(doc, "decisions", col, required=True))
    outputs = tuple(_build_output(item, col) for item in _seq(doc, "outputs", col, required=True))
    examples = tuple(_build_example(item, idx, col) for idx, item in enumerate(_seq(doc, "examples", col)))

    _unique([i.key for i in inputs], [i.line for i in inputs], col, "input key")
    _unique([o.key for o in outputs], [o.line for o in outputs], col, "output key")
    _unique([d.id for d in decisions], [d.line for d in decisions], col, "decision id")
    if sum(len(d.rules) for d in decisions) > MAX_RULES:
        col.add(_line(doc, "decisions"), "too-large",
                f"the ruleset has {sum(len(d.rules) for d in decisions):,} rules (limit {MAX_RULES:,})",
                "split it into several rulesets; rulesets this large are not meant to be edited by hand")
        kept, count = [], 0
        for decision in decisions:  # best effort for `tier check`: the decisions within the limit
            count += len(decision.rules)
            if count > MAX_RULES:
                break
            kept.append(decision)
        decisions = tuple(kept)
    rules = [r for d in decisions for r in d.rules]
    _unique([r.id for r in rules], [r.line for r in rules], col, "rule id")
    tiers = [o for o in outputs if o.tier]
    if len(tiers) != 1:
        col.add(_line(doc, "outputs"), "tier-column",
                f"exactly one output must be marked `tier: true` (found {len(tiers)})",
                "mark the grade/class column with tier: true")
    clash = {i.key for i in inputs} & {o.key for o in outputs}
    for key in sorted(clash):
        col.add(_line(doc, "outputs"), "name-clash", f"{key!r} is both an input and an output",
                "rename the output: outputs are added next to the input columns")

    return RulesetDef(
        id=rid,
        version=_scalar_text(doc.get("version")),
        title=_label(doc.get("title"), col, _line(doc, "title"), "title"),
        source=_scalar_text(doc.get("source")),
        effective_date=_scalar_text(doc.get("effective_date")),
        description=_label(doc.get("description"), col, _line(doc, "description"), "description"),
        inputs=inputs,
        parameters=params,
        checks=checks,
        decisions=decisions,
        outputs=outputs,
        examples=examples,
        path=file,
        content_hash=content_hash,
    )


def _seq(doc: dict, key: str, col: _Collector, required: bool = False) -> list:
    value = doc.get(key)
    if value is None:
        if required:
            col.add(1, "missing-field", f"ruleset has no {key!r} list", f"add `{key}:` with at least one entry")
        return []
    if not isinstance(value, list):
        col.add(_line(doc, key), "structure", f"{key!r} must be a list (entries start with '- ')", "")
        return []
    good = []
    for item in value:
        if isinstance(item, dict):
            good.append(item)
        else:
            col.add(_line(value), "structure", f"each entry of {key!r} must be a mapping, got {item!r}", "")
    return good


def _unique(names: list[str], lines: list[int | None], col: _Collector, what: str) -> None:
    seen: set[str] = set()
    for name, line in zip(names, lines):
        if name in seen:
            col.add(line, "duplicate", f"duplicate {what} {name!r}", f"give each {what} a unique name")
        seen.add(name)


def _key(obj: dict, field_name: str, col: _Collector, what: str) -> str:
    key = _scalar_text(obj.get(field_name))
    if not _KEY_RE.match(key):
        col.add(_line(obj, field_name) or _line(obj), "key", f"{what} {field_name} {key!r} is missing or not snake_case",
                "use lowercase ASCII letters, digits and _; put Chinese names in zh/aliases")
    return key


def _build_input(obj: dict, col: _Collector) -> InputDef:
    _check_fields(obj, _INPUT_FIELDS, col, "input")
    key = _key(obj, "key", col, "input")
    typ = _scalar_text(obj.get("type"))
    if typ not in INPUT_TYPES:
        close = difflib.get_close_matches(typ, INPUT_TYPES, n=1)
        col.add(_line(obj, "type") or _line(obj), "type", f"input {key!r}: unknown type {typ!r}",
                f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(INPUT_TYPES)}")
    values = _scalar_list(obj, "values", col, f"input {key!r}")
    if typ == "enum" and not values:
        col.add(_line(obj), "enum", f"input {key!r} is an enum without `values`", "list the allowed values")
    aliases = _scalar_list(obj, "aliases", col, f"input {key!r}")
    required = obj.get("required", False)
    if not isinstance(required, (bool, str)):
        col.add(_line(obj, "required"), "structure", f"input {key!r}: required must be true/false or an expression", "")
        required = False
    what = f"input {key!r}"
    return InputDef(
        key=key, type=typ, zh=_scalar_text(obj.get("zh")).strip(), en=_scalar_text(obj.get("en")).strip(),
        aliases=aliases, values=values,
        unit=_scalar_text(obj.get("unit")), min=_number_field(obj, "min", col, what),
        max=_number_field(obj, "max", col, what), required=required,
        default=_scalar_field(obj, "default", col, what),
        default_expr=_text_field(obj, "default_expr", col, what, numbers=True),
        blank_note=_text_field(obj, "blank_note", col, what),
        description=_scalar_text(obj.get("description")), line=_line(obj),
    )


def _build_params(obj: Any, col: _Collector, line: int | None) -> tuple[ParamDef, ...]:
    if obj is None:
        return ()
    if not isinstance(obj, dict):
        col.add(line, "structure", "parameters must be a mapping name → {type, default, ...}", "")
        return ()
    params = []
    for key, spec in obj.items():
        pline = _line(obj, key)
        if not _KEY_RE.match(str(key)):
            col.add(pline, "key", f"parameter name {key!r} is not snake_case", "use lowercase ASCII and _")
        if not isinstance(spec, dict):
            col.add(pline, "structure", f"parameter {key!r} must be a mapping with type and default", "")
            continue
        _check_fields(spec, _PARAM_FIELDS, col, f"parameter {key!r}")
        typ = _scalar_text(spec.get("type") or "number")
        if typ not in PARAM_TYPES:
            col.add(pline, "type", f"parameter {key!r}: unknown type {typ!r}", f"use one of {', '.join(PARAM_TYPES)}")
        if "default" not in spec:
            col.add(pline, "missing-field", f"parameter {key!r} has no default", "add `default: ...`")
        what = f"parameter {key!r}"
        params.append(ParamDef(key=str(key), type=typ, default=_scalar_field(spec, "default", col, what),
                               zh=_scalar_text(spec.get("zh")), en=_scalar_text(spec.get("en")),
                               min=_number_field(spec, "min", col, what), max=_number_field(spec, "max", col, what),
                               line=pline))
    return tuple(params)


def _build_check(obj: dict, col: _Collector) -> CheckDef:
    _check_fields(obj, _CHECK_FIELDS, col, "check")
    code = _scalar_text(obj.get("code"))
    if not code:
        col.add(_line(obj), "missing-field", "check has no code", "add e.g. code: 'INVALID:end_date'")
    what = f"check {code!r}"
    all_blank = _scalar_list(obj, "all_blank", col, what)
    if ("fails_when" in obj) == bool(all_blank):
        col.add(_line(obj), "structure", f"check {code!r} needs exactly one of fails_when / all_blank", "")
    return CheckDef(code=code, at=_text_field(obj, "at", col, what) or "",
                    fails_when=_text_field(obj, "fails_when", col, what), all_blank=all_blank, line=_line(obj))


def _build_decision(obj: dict, col: _Collector) -> DecisionDef:
    _check_fields(obj, _DECISION_FIELDS, col, "decision")
    did = _scalar_text(obj.get("id"))
    if not did:
        col.add(_line(obj), "missing-field", "decision has no id", "add id: e.g. CG-1")
    title = _label(obj.get("title"), col, _line(obj, "title"), f"decision {did}")
    if "compute" in obj:
        if "rules" in obj:
            col.add(_line(obj), "structure", f"decision {did!r} has both compute and rules", "split it in two decisions")
        compute = obj.get("compute")
        if not isinstance(compute, dict) or not compute:
            col.add(_line(obj, "compute"), "structure", f"decision {did!r}: compute must map fact → expression", "")
            compute = {}
        for fact, value in list(compute.items()):
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                col.add(_line(compute, fact), "structure",
                        f"decision {did!r}: compute {fact!r} must be an expression text, got {_show(value)}", "")
                compute = {k: v for k, v in compute.items() if k != fact}
        then = tuple((str(k), v if isinstance(v, str) and v.startswith("=") else f"={v}") for k, v in compute.items())
        rule = RuleDef(id=did, when=None, then=then, note=_text_field(obj, "note", col, f"decision {did!r}"),
                       note_at=_text_field(obj, "note_at", col, f"decision {did!r}"),
                       line=_line(obj), then_lines=tuple((str(k), _line(compute, k)) for k in compute))
        return DecisionDef(id=did, title=title, hit="compute", aggregate=None, rules=(rule,), line=_line(obj))
    hit = _scalar_text(obj.get("hit") or "first")
    if hit not in HIT_POLICIES:
        col.add(_line(obj, "hit"), "hit-policy", f"decision {did!r}: unknown hit policy {hit!r}",
                f"use one of {', '.join(HIT_POLICIES)}")
    aggregate = obj.get("aggregate")
    if hit == "collect":
        aggregate = aggregate or "list"
        if aggregate not in AGGREGATES:
            col.add(_line(obj, "aggregate"), "aggregate", f"decision {did!r}: unknown aggregate {aggregate!r}",
                    f"use one of {', '.join(AGGREGATES)}")
    elif aggregate is not None:
        col.add(_line(obj, "aggregate"), "aggregate", f"decision {did!r}: aggregate only applies to hit: collect", "")
    rules = []
    raw_rules = obj.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        col.add(_line(obj), "structure", f"decision {did!r} needs `rules:` (a list) or `compute:`", "")
        raw_rules = []
    if len(raw_rules) > MAX_RULES_PER_DECISION:
        col.add(_line(obj, "rules") or _line(obj), "too-large",
                f"decision {did!r} has {len(raw_rules):,} rules (limit {MAX_RULES_PER_DECISION:,})",
                "split the table, or use a range condition instead of one row per value")
        raw_rules = raw_rules[:MAX_RULES_PER_DECISION]
    for index, item in enumerate(raw_rules):
        if not isinstance(item, dict):
            col.add(_line(raw_rules), "structure", f"decision {did!r}: rule #{index + 1} must be a mapping", "")
            continue
        _check_fields(item, _RULE_FIELDS, col, f"rule of {did}")
        rule_id = _scalar_text(item.get("id")) or f"{did}#{index + 1}"
        then = item.get("then") or {}
        if not isinstance(then, dict):
            col.add(_line(item, "then"), "structure", f"rule {rule_id!r}: then must map output → value", "")
            then = {}
        when = item.get("when")
        if when is not None and not isinstance(when, (str, bool)):
            col.add(_line(item, "when"), "structure", f"rule {rule_id!r}: when must be an expression text", "")
            when = None
        if isinstance(when, bool):
            when = "true" if when else "false"
        for out_key, value in list(then.items()):
            if value is not None and not isinstance(value, _SCALARS):
                col.add(_line(then, out_key), "structure",
                        f"rule {rule_id!r}: then {out_key!r} must be a plain value or '=expression', got {_show(value)}", "")
                then = {k: v for k, v in then.items() if k != out_key}
        rules.append(RuleDef(id=rule_id, when=when, then=tuple((str(k), v) for k, v in then.items()),
                             note=_text_field(item, "note", col, f"rule {rule_id!r}"),
                             note_at=_text_field(item, "note_at", col, f"rule {rule_id!r}"), line=_line(item),
                             then_lines=tuple((str(k), _line(then, k)) for k in then)))
    return DecisionDef(id=did, title=title, hit=hit, aggregate=aggregate, rules=tuple(rules), line=_line(obj))


def _build_output(obj: dict, col: _Collector) -> OutputDef:
    _check_fields(obj, _OUTPUT_FIELDS, col, "output")
    key = _key(obj, "key", col, "output")
    if key in RESERVED_OUTPUTS:
        col.add(_line(obj), "reserved", f"output {key!r} is implicit", f"remove it: {', '.join(RESERVED_OUTPUTS)} are added by the engine")
    typ = _scalar_text(obj.get("type") or "text")
    if typ not in OUTPUT_TYPES:
        col.add(_line(obj, "type"), "type", f"output {key!r}: unknown type {typ!r}", f"use one of {', '.join(OUTPUT_TYPES)}")
    decimals = obj.get("decimals", 0)
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 10:
        col.add(_line(obj, "decimals"), "structure", f"output {key!r}: decimals must be a whole number 0-10", "")
        decimals = 0
    tier = obj.get("tier", False)
    if not isinstance(tier, bool):  # `tier: "no"` must not mark the column
        col.add(_line(obj, "tier") or _line(obj), "structure", f"output {key!r}: tier must be true or false", "")
        tier = False
    return OutputDef(key=key, zh=_scalar_text(obj.get("zh")), en=_scalar_text(obj.get("en")), type=typ,
                     tier=tier, line=_line(obj), decimals=decimals)


def _build_example(obj: dict, index: int, col: _Collector) -> ExampleDef:
    _check_fields(obj, _EXAMPLE_FIELDS, col, "example")
    name = _scalar_text(obj.get("name")) or f"example {index + 1}"
    inp, expect, params = obj.get("input"), obj.get("expect"), obj.get("params") or {}
    if not isinstance(inp, dict) or not isinstance(expect, dict) or not isinstance(params, dict):
        col.add(_line(obj), "structure", f"example {name!r} needs input: and expect: mappings", "")
        inp, expect, params = (inp if isinstance(inp, dict) else {}), (expect if isinstance(expect, dict) else {}), {}
    # read-only views: a loaded (and cached, shared between threads) ruleset must not be changeable
    return ExampleDef(name=name, input=MappingProxyType(dict(inp)), expect=MappingProxyType(dict(expect)),
                      params=MappingProxyType(dict(params)), line=_line(obj))

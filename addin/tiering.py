"""The add-in's logic without Excel: rulesets cached, parameters read, tables evaluated, cells built.

`udfs.py` (worksheet functions) and `macros.py` (buttons) are thin adapters over this module;
neither does any conversion of its own. Flow of one call:

    Excel cells ─excel_values.normalise_table─▶ header + rows
        ─engine.rows.map_headers─▶ input key → column      (aliases, RULESETS §0.11)
        ─excel_values.column_for_engine─▶ typed columns     (Excel date serials converted)
        ─engine.api.evaluate (vector)─▶ typed result columns (the one parser, the one engine;
                                        engine.api.evaluate_columns when the engine offers it)
        ─view cells─▶ the values a UDF returns or a macro writes

Error rows in Excel. RULESETS §0.5 fixes what an ERROR row holds (status ERROR, its codes,
tier `待定`, other outputs blank). Excel views add a readable reason, `#ERR 主债务逾期天数:
'abc' 不是整数`, built from the input's Chinese header and the engine's reason:

* a view that carries the error columns (`errors` or `error_text` = 错误说明) keeps §0.5
  exactly and puts the reason in 错误说明 — TIER_TABLE's default view and the fill macro;
* a view without them (one cell from `=TIER`, or TIER_TABLE asked for a few outputs) shows the
  reason in every cell of the row instead, so an error is never mistaken for a blank.

Thread safety: compiled rulesets are immutable and shared; the cache is guarded by a lock; every
call builds its own frames. UDF calls may arrive from several threads (PRODUCT §10).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from addin import excel_values as xv
from engine import api
from engine.compile import CompiledRuleset, render_param
from engine.errors import InputError, RulesetError, TierError  # noqa: F401 — tg.RulesetError is caught by callers
from engine.prepare import prepare_row
from engine.rows import map_headers, normalize_header
from engine.ruleset import RulesetDef, available_rulesets

# The 参数 sheet is read the same way by `tier fill`, so its parsing lives in the engine.
from engine.workbook_params import ParamSet, as_of_value, read_params, resolve_ref, ruleset_row

log = logging.getLogger("tierbook.addin")

ERR_PREFIX = "#ERR "
MAX_MESSAGE = 300  # characters of one #ERR text; a cell is no place for an essay


# --------------------------------------------------------------------------- columns of a view
@dataclass(frozen=True)
class Column:
    """One column of an Excel view: an implicit column, a declared output, or 错误说明."""

    key: str
    zh: str
    en: str
    kind: str  # 'text' | 'number' | 'integer' | 'date' | 'boolean'
    implicit: bool = False
    decimals: int = 0  # number outputs shown with at least this many decimals (budgets 1.0, 24.0)

    @property
    def header(self) -> str:
        return self.zh or self.en or self.key


STATUS = Column("status", "状态", "Status", "text", True)
ERRORS = Column("errors", "错误", "Errors", "text", True)
NOTES = Column("notes", "备注", "Notes", "text", True)
ERROR_TEXT = Column("error_text", "错误说明", "Error text", "text", True)
FIRED = Column("fired_rules", "规则轨迹", "Fired rules", "text", True)
IMPLICIT = (STATUS, ERRORS, NOTES, ERROR_TEXT, FIRED)


def output_columns(compiled: CompiledRuleset) -> list[Column]:
    """The declared outputs, in order, with the kind their cells take."""
    columns = []
    for out in compiled.definition.outputs:
        fact_kind = compiled.fact_types.get(out.key, "text")
        kind = out.type if out.type in ("integer", "boolean") else fact_kind
        if kind == "boolean" and fact_kind != "boolean":
            kind = fact_kind
        if out.type == "integer" and fact_kind != "number":
            kind = fact_kind
        columns.append(Column(out.key, out.zh, out.en, kind, decimals=int(getattr(out, "decimals", 0) or 0)))
    return columns


def default_view(compiled: CompiledRuleset) -> list[Column]:
    """status, errors, notes, every declared output, 错误说明 (tier eval's columns + the reason)."""
    return [STATUS, ERRORS, NOTES, *output_columns(compiled), ERROR_TEXT]


def column_index(compiled: CompiledRuleset) -> dict[str, Column]:
    """normalised name (key, zh, en) → column, for requests like 'grade', '客户等级', '状态'."""
    index: dict[str, Column] = {}
    for column in [*IMPLICIT, *output_columns(compiled)]:
        for name in (column.key, column.zh, column.en):
            if name:
                index.setdefault(normalize_header(name), column)
    return index


def parse_view(compiled: CompiledRuleset, requested: Any) -> list[Column]:
    """The columns an `outputs` argument asks for: a range of names or 'a, b; c' text; blank = default.

    Names are output keys or their Chinese/English headers (a trailing unit in brackets is ignored).
    """
    names: list[str] = []
    for cell in xv.as_list(requested):
        if xv.is_blank_cell(cell):
            continue
        text = str(cell)
        for part in text.replace("；", ";").replace("，", ",").replace(";", ",").split(","):
            if part.strip():
                names.append(part.strip())
    if not names:
        return default_view(compiled)
    index = column_index(compiled)
    view = []
    for name in names:
        column = index.get(normalize_header(name))
        if column is None:
            import difflib

            choices = [c.key for c in [*IMPLICIT, *output_columns(compiled)]] + [
                c.zh for c in output_columns(compiled) if c.zh]
            close = difflib.get_close_matches(name, choices, n=1)
            hint = f" 是否想用 / did you mean {close[0]!r}?" if close else ""
            raise InputError(f"未知输出列 / unknown output {name!r} for ruleset {compiled.id!r}.{hint}")
        view.append(column)
    return view


def is_default_request(requested: Any) -> bool:
    """True when an `outputs` argument names nothing (omitted, blank cells, empty text)."""
    return all(xv.is_blank_cell(cell) for cell in xv.as_list(requested))


def has_error_columns(view: Sequence[Column]) -> bool:
    return any(c.key in ("errors", "error_text") for c in view)


# --------------------------------------------------------------------------- compiled rulesets
class RulesetCache:
    """Compiled rulesets by (file content hash, parameters): Excel recalculation compiles once.

    The file is read and hashed on every lookup (tens of microseconds), so an edited ruleset is
    picked up at the next recalculation without any file-time games. Compiling happens outside
    the lock; two threads racing on a cold key both compile and one result wins — harmless,
    since compiled rulesets are immutable and equal.
    """

    def __init__(self, size: int = 32) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, CompiledRuleset] = OrderedDict()
        self._size = size

    def get(self, ref: str | os.PathLike, params: Mapping[str, Any] | None = None,
            base_dir: str | os.PathLike | None = None) -> CompiledRuleset:
        path = resolve_ref(ref, base_dir)
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        key = (content, _params_key(params))
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        compiled = api.compile(path, dict(params or {}))
        key = (compiled.definition.content_hash, key[1])
        with self._lock:
            self._items[key] = compiled
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return compiled

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _params_key(params: Mapping[str, Any] | None) -> tuple:
    return tuple(sorted((str(k), type(v).__name__, repr(v)) for k, v in (params or {}).items()))


CACHE = RulesetCache()


# --------------------------------------------------------------------------- evaluating a table
@dataclass
class TableRun:
    """One evaluated table: the typed engine result plus what the Excel views need."""

    compiled: CompiledRuleset
    result: Mapping[str, np.ndarray]  # status, errors, notes, outputs[, fired_rules] — engine-typed
    header: list[object]
    found: dict[str, int]  # input key → column index in the Excel table
    blank_rows: np.ndarray  # rows with no value in any input column: their output cells stay empty
    error_text: np.ndarray  # object array: '#ERR …' for ERROR rows, '' elsewhere
    params: ParamSet
    inputs: dict[str, np.ndarray] = field(default_factory=dict)  # what the engine saw, by input key
    as_of_filled: int = 0  # blank as_of_date cells filled from the sheet-level value

    def raw_row(self, row: int) -> dict[str, object]:
        """Input key → the cell value the engine saw in `row` (serials converted, as_of filled)."""
        return {key: _cell(values, row) for key, values in self.inputs.items()}

    @property
    def n(self) -> int:
        return len(self.error_text)

    def counts(self) -> dict[str, int]:
        status = self.result["status"]
        blank = self.blank_rows
        return {"rows": int(self.n - blank.sum()), "OK": int(((status == "OK") & ~blank).sum()),
                "ERROR": int(((status == "ERROR") & ~blank).sum()), "blank": int(blank.sum())}


def match_inputs(compiled: CompiledRuleset, header: Sequence[object], sheet: str = "") -> dict[str, int]:
    """input key → index of its column in `header`; an error when no header names any input."""
    labels = {index: cell for index, cell in enumerate(header)}
    by_label = map_headers([labels[i] for i in range(len(header))], compiled.definition, sheet=sheet)
    positions = {}
    for key, label in by_label.items():
        positions[key] = next(i for i, cell in labels.items() if cell is label or cell == label)
    if not positions:
        expected = "、".join(i.zh or i.key for i in compiled.definition.inputs[:6])
        raise InputError(
            f"表头未匹配到规则集 {compiled.id!r} 的任何输入列 / no header names an input of ruleset "
            f"{compiled.id!r}; the first row must be the header row (e.g. {expected})")
    return positions


def evaluate_cells(compiled: CompiledRuleset, header: Sequence[object], rows: Sequence[Sequence[object]],
                   params: ParamSet | None = None, date1904: bool = False, explain: bool = False,
                   sheet: str = "") -> TableRun:
    """Evaluate rectangular Excel rows under `header` with the vector engine.

    A row whose input cells are all empty is a gap in the table, not a row to grade: its
    output cells stay empty (it would otherwise be an ERROR row of MISSING codes).
    """
    params = params or ParamSet()
    found = match_inputs(compiled, header, sheet)
    n = len(rows)
    types = {i.key: i.type for i in compiled.definition.inputs}
    data: dict[str, Any] = {}
    columns = list(zip(*rows, strict=True)) if n else [() for _ in header]  # one pass: 3× faster than per column
    for key, index in found.items():
        data[key] = xv.column_for_engine(columns[index], types[key], date1904)
    blank = _blank_rows(data, n)  # before as_of_date is filled in: that is no input of the row
    filled = 0
    if params.as_of_date is not None and "as_of_date" in types:
        as_of = as_of_value(params.as_of_date, date1904)
        current = data.get("as_of_date")
        if current is None:
            data["as_of_date"] = np.full(n, np.datetime64(as_of, "D"), dtype="datetime64[D]")
            filled = n
        else:
            current = current.copy()
            if current.dtype.kind == "M":
                empty = np.isnat(current)
                current[empty] = np.datetime64(as_of, "D")
            else:
                empty = np.fromiter((xv.is_blank_cell(v) for v in current), dtype=bool, count=n)
                current[empty] = as_of
            filled = int(empty.sum())
            data["as_of_date"] = current
    result = _evaluate(compiled, data, n, explain, sheet)
    error_text = np.full(n, "", dtype=object)
    status = result["status"]
    run = TableRun(compiled=compiled, result=result, header=list(header), found=found, blank_rows=blank,
                   error_text=error_text, params=params, inputs=data, as_of_filled=filled)
    _fill_error_texts(run, np.flatnonzero((status == "ERROR") & ~blank))
    return run


def _fill_error_texts(run: TableRun, rows: np.ndarray) -> None:
    """`#ERR …` for each ERROR row. Reasons are looked up once per distinct (input, cell) and texts
    once per distinct (codes, reasons): 2,000 rows missing the same column need one text."""
    if not len(rows):
        return
    compiled = run.compiled
    errors = run.result["errors"]
    reason_memo: dict[tuple[str, object], str] = {}
    text_memo: dict[tuple, str] = {}
    for row in rows:
        codes = str(errors[row])
        reasons: dict[str, str] = {}
        for code in codes.split(";"):
            kind, _, key = code.partition(":")
            if kind == "INVALID" and key in run.inputs:
                if run.inputs[key].dtype.kind == "M":
                    continue  # a date cell parsed by type: only a cross-field check can reject it
                cell = _cell(run.inputs[key], row)
                memo_key = (key, _hashable(cell))
                reason = reason_memo.get(memo_key)
                if reason is None:
                    reason = reason_memo[memo_key] = own_reason(compiled, key, cell)
                reasons[code] = reason
        text_key = (codes, tuple(sorted(reasons.items())))
        text = text_memo.get(text_key)
        if text is None:
            text = text_memo[text_key] = error_text(compiled, codes, reasons)
        run.error_text[row] = text


def _hashable(value: object) -> object:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return (type(value).__name__, value)


def _evaluate(compiled: CompiledRuleset, data: Mapping[str, np.ndarray], n: int, explain: bool,
              sheet: str) -> dict[str, np.ndarray]:
    """The vector engine over columns keyed by input key → result columns by name.

    Uses `engine.api.evaluate_columns` when the engine offers it (no DataFrame round trip);
    otherwise `engine.api.evaluate` on a frame of those columns — same engine, same result.
    """
    direct = getattr(api, "evaluate_columns", None)
    if direct is not None:
        return dict(direct(compiled, data, n, explain=explain))
    frame = pd.DataFrame({key: pd.Series(values, dtype=object if values.dtype == object else None)
                          for key, values in data.items()}, index=pd.RangeIndex(n))
    result = api.evaluate(compiled, frame, engine="vector", explain=explain, sheet=sheet)
    result.attrs = {}  # run metadata: pandas would deep-copy it into every column taken below
    names = ["status", "errors", "notes", *(o.key for o in compiled.definition.outputs)]
    if explain:
        names.append("fired_rules")
    return {name: result[name].to_numpy() for name in names}


def _blank_rows(data: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Rows with no value in any input column: typed columns by mask first, then cell by cell
    over the rows still in question (usually none by then)."""
    blank = np.ones(n, dtype=bool)
    ordered = sorted(data.values(), key=lambda values: values.dtype == object)
    for values in ordered:
        if not blank.any():
            break
        if values.dtype.kind == "M":
            blank &= np.isnat(values)
        elif values.dtype.kind == "f":
            blank &= np.isnan(values)
        else:
            candidates = np.flatnonzero(blank)
            present = ~pd.isna(values[candidates])
            for row, has_value in zip(candidates, present, strict=True):
                if has_value and not xv.is_blank_cell(values[row]):
                    blank[row] = False
    return blank


def _cell(values: np.ndarray, row: int) -> object:
    value = values[row]
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else value.astype("datetime64[D]").astype(dt.date)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    return value


# --------------------------------------------------------------------------- error texts
def _zh(reason: str) -> str:
    """The Chinese half of an engine reason ("'abc' 不是整数 / is not an integer")."""
    return reason.split(" / ", 1)[0].strip()


def _label(definition: RulesetDef, key: str) -> str:
    for inp in definition.inputs:
        if inp.key == key:
            return inp.zh or inp.en or key
    return key


def own_reason(compiled: CompiledRuleset, key: str, cell: object) -> str:
    """Why `cell` is INVALID as input `key` on its own ('' when the cell itself is fine, i.e. the
    code came from a cross-field check). The reason is the engine's: `prepare_row` on that cell."""
    return prepare_row(compiled, {key: cell}).reasons.get(f"INVALID:{key}", "")


def describe_errors(compiled: CompiledRuleset, codes: str, raw: Mapping[str, object]) -> str:
    """`INVALID:overdue_days;MISSING:as_of_date` + the row's cells → the row's `#ERR …` text."""
    input_keys = {i.key for i in compiled.definition.inputs}
    reasons = {code: own_reason(compiled, code.partition(":")[2], raw.get(code.partition(":")[2]))
               for code in codes.split(";") if code.startswith("INVALID:") and code.partition(":")[2] in input_keys}
    return error_text(compiled, codes, reasons)


def error_text(compiled: CompiledRuleset, codes: str, reasons: Mapping[str, str]) -> str:
    """`#ERR 主债务逾期天数: 'abc' 不是整数; 分类基准日: 必填, 不能为空`.

    Parse failures quote the cell with the engine's reason (its Chinese half); cross-field
    checks name the condition that must not hold (`担保到期日: 不应出现 担保到期日 < 担保起始日`);
    a code nothing explains is shown as it is.
    """
    definition = compiled.definition
    checks = {c.code: c for c in compiled.checks}
    input_keys = {i.key for i in definition.inputs}
    parts: list[str] = []
    for code in [c for c in codes.split(";") if c]:
        kind, _, key = code.partition(":")
        own = key in input_keys
        reason = reasons.get(code, "")
        check = checks.get(code)
        if kind == "MISSING" and own:
            parts.append(f"{_label(definition, key)}: 必填, 不能为空")
        elif reason:
            parts.append(f"{_label(definition, key) if own else code}: {_zh(reason)}")
        elif check is not None:
            parts.append(_check_text(compiled, check))
        else:
            parts.append(code)
    text = ERR_PREFIX + "; ".join(parts)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def _check_text(compiled: CompiledRuleset, check: Any) -> str:
    from addin.explain import condition_words

    definition = compiled.definition
    if check.all_blank:
        labels = "、".join(_label(definition, k) for k in check.all_blank)
        return f"{labels} 不能全部为空"
    where = _label(definition, check.at) if check.at else check.code
    return f"{where}: 不应出现 {condition_words(compiled, check.fails_when, None)}"


# --------------------------------------------------------------------------- cells of a view
_NAT = np.iinfo(np.int64).min


def _iso_dates(values: np.ndarray) -> list[object]:
    """datetime64 → 'YYYY-MM-DD' text ('' for NaT), formatting each distinct day once."""
    days = values.astype("datetime64[D]").astype(np.int64)
    unique, inverse = np.unique(days, return_inverse=True)
    text = np.datetime_as_string(unique.astype("datetime64[D]"), unit="D").astype(object)
    text[unique == _NAT] = ""
    return text[inverse.reshape(-1)].tolist()


def _datetimes(values: np.ndarray) -> list[object]:
    """datetime64 → `datetime` at midnight (None for NaT): what Excel stores as a date cell."""
    days = values.astype("datetime64[D]").astype(np.int64)
    unique, inverse = np.unique(days, return_inverse=True)
    cells = np.array([None if d == _NAT else dt.datetime.combine(dt.date.fromordinal(int(d) + _UNIX_ORDINAL),
                                                                  dt.time()) for d in unique], dtype=object)
    return cells[inverse.reshape(-1)].tolist()


_UNIX_ORDINAL = dt.date(1970, 1, 1).toordinal()


def _numbers(values: np.ndarray, kind: str, blank: object) -> list[object]:
    values = np.asarray(values, dtype=np.float64)
    present = ~np.isnan(values)
    out = np.full(len(values), blank, dtype=object)
    if kind == "boolean":
        out[present] = values[present] != 0
        return out.tolist()
    if kind == "integer":
        out[present] = np.rint(values[present]).astype(np.int64)
        return out.tolist()
    integral = present & (np.floor(values) == values) & (np.abs(values) < 2**53)
    out[integral] = values[integral].astype(np.int64)
    other = present & ~integral
    if other.any():
        # 15 significant digits, as `tier eval` prints them: a float sum 603.9200999999999 is
        # the 603.9201 the exact engine computes (and what Excel would display anyway).
        out[other] = [float(format(v, ".15g")) for v in values[other].tolist()]
    return out.tolist()


def _texts(values: np.ndarray, blank: object) -> list[object]:
    """Object column of str/None (rarely Decimal, date…) → cells; blanks as `blank`."""
    out = values.astype(object, copy=True)
    missing = pd.isna(out)
    if missing.any():
        out[missing] = blank
    if not set(map(type, out.tolist())) <= {str, type(blank)}:
        out = np.array([c if c.__class__ is str or c is blank else _text_of(c) for c in out.tolist()], dtype=object)
    return out.tolist()


def column_cells(run: TableRun, column: Column, for_write: bool) -> list[object]:
    """One view column as cell values: UDF results (`for_write=False`) or values to write.

    UDF results: numbers as numbers, dates as YYYY-MM-DD text (a UDF cannot format its cells,
    so a date would show as a serial), blanks as "". Written values: dates as `datetime`
    (Excel stores a date cell), blanks as None (cell cleared), text made safe (`excel_text`).
    """
    blank: object = None if for_write else ""
    if column.key == "error_text":
        cells = run.error_text.tolist()
    else:
        values = run.result[column.key]
        if values.dtype.kind == "M":
            cells = _datetimes(values) if for_write else _iso_dates(values)
        elif values.dtype.kind in "fiu":
            cells = _numbers(values, column.kind, blank)
        else:
            cells = _texts(values, blank)
    if for_write:
        cells = [None if c == "" and c.__class__ is str else (xv.excel_text(c) if c.__class__ is str else c)
                 for c in cells]
    if run.blank_rows.any():
        for row in np.flatnonzero(run.blank_rows):
            cells[row] = blank
    return cells


def _text_of(value: object) -> str:
    if isinstance(value, Decimal):
        return render_param(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()[:10]
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def view_cells(run: TableRun, view: Sequence[Column], for_write: bool = False) -> list[list[object]]:
    """The rows of `view` (without header); ERROR rows as the module docstring says."""
    columns = [column_cells(run, c, for_write) for c in view]
    if not has_error_columns(view):
        status = run.result["status"]
        errors = np.flatnonzero((status == "ERROR") & ~run.blank_rows)
        for position, column in enumerate(view):
            if column.key == "status":
                continue
            for row in errors:
                columns[position][row] = run.error_text[row]
    return list(map(list, zip(*columns, strict=True))) if columns else [[] for _ in range(run.n)]


def view_header(view: Sequence[Column]) -> list[object]:
    return [c.header for c in view]


class _GcPause:
    """Pause the cyclic garbage collector while a call builds ~10^5 small objects.

    Building 10,000 row lists triggers dozens of collections that each walk every live object
    (pandas, pyarrow …): measured 20 ms → 6 ms for the result rows of one TIER_TABLE call. The
    objects built here hold no cycles, so nothing is lost by collecting later. Nested and
    concurrent calls share one pause (a counter under a lock), and the collector is switched
    back on only if it was on when the first of them started.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False

    def __enter__(self) -> _GcPause:
        import gc

        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._was_enabled:
                gc.enable()


gc_paused = _GcPause()


# --------------------------------------------------------------------------- failures → one cell
def failure_text(exc: BaseException) -> str:
    """Any exception as a one-line `#ERR …` cell text; never a traceback (that goes to the log)."""
    if isinstance(exc, TierError):
        message = str(exc).strip()
        lines = [line for line in message.splitlines() if line.strip()]
        if len(lines) > 1:  # a RulesetError lists its problems: show the first one or two
            message = " | ".join(lines[:3])
    else:
        log.exception("tierbook add-in: unexpected error")
        message = f"内部错误 / internal error ({type(exc).__name__}): {exc}"
    text = ERR_PREFIX + message
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def guarded(fn: Callable[..., Any], shape: str = "cell") -> Callable[..., Any]:
    """Wrap a UDF so every failure becomes `#ERR …` (a cell, or [[cell]] for array functions)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 — no traceback may reach a cell (PRODUCT §5)
            text = failure_text(exc)
            return [[text]] if shape == "array" else text

    return wrapper


# --------------------------------------------------------------------------- listings
def ruleset_rows() -> list[list[object]]:
    """id, version, title of every ruleset found (a broken file is listed with its problem)."""
    from engine.ruleset import read_ruleset

    rows: list[list[object]] = [["规则集", "版本", "名称", "Title"]]
    for rid, path in sorted(available_rulesets().items()):
        definition, problems = read_ruleset(path)
        if definition is None:
            rows.append([rid, "", f"#ERR 无法加载 / cannot load: {problems[0].message if problems else ''}", ""])
            continue
        rows.append([definition.id, definition.version, definition.title.zh, definition.title.en])
    return rows


def param_rows(compiled: CompiledRuleset) -> list[list[object]]:
    """key, effective value, default, label of every parameter (overrides visible)."""
    defaults = api.compile(compiled.definition).params if compiled.overridden else compiled.params
    rows: list[list[object]] = [["参数", "当前值", "默认值", "说明", "Description"]]
    for param in compiled.definition.parameters:
        rows.append([param.key, _param_cell(compiled.params[param.key]), _param_cell(defaults[param.key]),
                     param.zh, param.en])
    return rows


def _param_cell(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def changed_params_text(compiled: CompiledRuleset) -> str:
    """`a=1, b=2` for the parameters that differ from the file's defaults ('默认值' when none)."""
    if not compiled.overridden:
        return "默认值"
    return ", ".join(f"{k}={render_param(v)}" for k, v in compiled.overridden.items())


__all__ = [
    "CACHE", "Column", "ERROR_TEXT", "ERRORS", "ERR_PREFIX", "FIRED", "NOTES", "ParamSet", "RulesetCache",
    "STATUS", "TableRun", "as_of_value", "changed_params_text", "column_cells", "default_view",
    "describe_errors", "error_text", "evaluate_cells", "failure_text", "guarded", "is_default_request",
    "match_inputs",
    "output_columns", "own_reason",
    "param_rows", "parse_view", "read_params", "resolve_ref", "ruleset_row", "ruleset_rows", "view_cells",
    "view_header",
]

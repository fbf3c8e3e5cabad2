"""The Python API: load, check, compile and evaluate rulesets.

    >>> import engine
    >>> result = engine.evaluate("credit", [{"评估日期": "2024-06-30", "月均销售额": "25,000",
    ...                                      "平均回款天数": 20}])
    >>> result.loc[0, "grade"]
    'A'

`evaluate` returns the input columns unchanged, then `status`, `errors`, `notes`, the ruleset's
outputs and (explain=True) `fired_rules`. Compiled rulesets are cached by content and parameters,
so repeated calls (Excel recalculation) pay for parsing once.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from engine import outputs as out
from engine import prepare, scalar, vector
from engine.compile import CompiledRuleset, compile_ruleset
from engine.errors import InputError, Problem, TierError
from engine.ruleset import RulesetDef, load_ruleset as _load_definition, resolve_ruleset_path
from engine.rows import map_headers

ENGINES = ("vector", "rete", "scalar")

_cache_lock = threading.Lock()
_compiled_cache: "OrderedDict[tuple, CompiledRuleset]" = OrderedDict()
_CACHE_SIZE = 64


def load_ruleset(ref: str | os.PathLike | RulesetDef) -> RulesetDef:
    """A ruleset by id (`credit`) or file path, structurally validated."""
    if isinstance(ref, RulesetDef):
        return ref
    return _load_definition(ref)


def check_ruleset(ref: str | os.PathLike | RulesetDef) -> list[Problem]:
    """Every problem `tier check` reports (never raises for ruleset content)."""
    from engine.check import check_ruleset as _check

    return _check(ref if isinstance(ref, RulesetDef) else resolve_ruleset_path(ref))


def compile(ref: str | os.PathLike | RulesetDef | CompiledRuleset,  # noqa: A001 — the API verb
            params: Mapping[str, Any] | None = None) -> CompiledRuleset:
    """Load + bind parameters + compile, cached by (file content, parameters)."""
    if isinstance(ref, CompiledRuleset):
        if not params:
            return ref
        ref = ref.definition
    definition = load_ruleset(ref)
    key = (definition.path, definition.content_hash, tuple(sorted((str(k), str(v)) for k, v in (params or {}).items())))
    with _cache_lock:
        hit = _compiled_cache.get(key)
        if hit is not None:
            _compiled_cache.move_to_end(key)
            return hit
    compiled = compile_ruleset(definition, params)
    with _cache_lock:
        _compiled_cache[key] = compiled
        while len(_compiled_cache) > _CACHE_SIZE:
            _compiled_cache.popitem(last=False)
    return compiled


def _as_frame(table: Any) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, Mapping):
        return pd.DataFrame(table)
    rows = list(table)
    if rows and isinstance(rows[0], Mapping):
        return pd.DataFrame(rows)
    if rows and isinstance(rows[0], (list, tuple)):  # header row + data rows
        header, *data = rows
        return pd.DataFrame([list(r) for r in data], columns=[str(h) for h in header])
    return pd.DataFrame(rows)


def input_columns(compiled: CompiledRuleset, frame: pd.DataFrame, sheet: str = "") -> dict[str, Any]:
    """input key → the frame's column (by header or alias), as the pandas Series itself.

    The Series keeps its dtype: `parse_column` reads arrow-backed text and nullable booleans
    without a detour through Python objects (that detour was a third of a 1M-row run, issue 8).
    The row engines see the cells through `_cells`.
    """
    found = map_headers(frame.columns, compiled.definition, sheet=sheet)
    return {key: frame[header] for key, header in found.items()}


def _cells(column: Any) -> np.ndarray:
    """A column's raw cells as the row-at-a-time engines read them (objects for text)."""
    if isinstance(column, pd.Series):
        if column.dtype == object or str(column.dtype) in ("str", "string"):
            return column.to_numpy(dtype=object)
        return column.to_numpy()
    return column


def _take(column: Any, rows: np.ndarray) -> Any:
    return column.iloc[rows] if isinstance(column, pd.Series) else np.asarray(column)[rows]


def evaluate(ruleset: str | os.PathLike | RulesetDef | CompiledRuleset, table: Any,
             params: Mapping[str, Any] | None = None, engine: str = "vector", explain: bool = False,
             sheet: str = "") -> pd.DataFrame:
    """Evaluate every row of `table` (DataFrame, list of dicts, or header row + rows).

    One bad row never stops the others: it gets status ERROR and its codes in `errors`.
    """
    if engine not in ENGINES:
        raise TierError(f"未知引擎 / unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    compiled = compile(ruleset, params)
    frame = _as_frame(table)
    # A result file fed back in (last quarter's output) already has the output columns: they are
    # recomputed, not duplicated — the new values replace them at the end of the table.
    produced = {"status", "errors", "notes", "fired_rules", *(o.key for o in compiled.definition.outputs)}
    stale = [c for c in frame.columns if str(c) in produced]
    if stale:
        frame = frame.drop(columns=stale)
    columns = input_columns(compiled, frame, sheet=sheet)
    if engine == "vector":
        result = _evaluate_vector(compiled, columns, len(frame), explain)
    else:
        result = _evaluate_rows(compiled, columns, len(frame), explain, engine)
    result_frame = out.build_frame(frame, compiled, result, explain)
    result_frame.attrs["tierbook"] = run_info(compiled, engine)
    return result_frame


def run_info(compiled: CompiledRuleset, engine: str) -> dict[str, object]:
    """What explains every figure of a run: ruleset, version, content digest, engine, changed parameters."""
    from engine.compile import render_param

    return {
        "ruleset": compiled.id,
        "version": compiled.version,
        "digest": compiled.digest,
        "engine": engine,
        "parameters_changed": {k: render_param(v) for k, v in compiled.overridden.items()},
        "parameters": {k: render_param(v) for k, v in compiled.params.items()},
    }


def evaluate_columns(compiled: CompiledRuleset, columns: Mapping[str, Any], n: int,
                     explain: bool = False) -> dict[str, np.ndarray]:
    """Columns keyed by input key → result columns by name, with the vector engine.

    The add-in's path: it already holds one array per input, so it skips the DataFrame round
    trip (about a fifth of a 10,000-row TIER_TABLE call).
    """
    return _evaluate_vector(compiled, columns, n, explain)


def evaluate_records(compiled: CompiledRuleset, records: Sequence[Mapping[str, Any]], engine: str = "scalar",
                     explain: bool = True) -> dict[str, np.ndarray]:
    """Rows already keyed by input key → output columns (used by the add-in for single rows)."""
    keys = [i.key for i in compiled.inputs]
    columns = {k: np.array([r.get(k) for r in records], dtype=object) for k in keys}
    if engine == "vector":
        return _evaluate_vector(compiled, columns, len(records), explain)
    return _evaluate_rows(compiled, columns, len(records), explain, engine)


# --------------------------------------------------------------------------- row engines
def _row_engine(name: str):
    if name == "rete":
        from engine import rete

        return rete.decide_rows
    return scalar.decide_rows


def _evaluate_rows(compiled: CompiledRuleset, columns: Mapping[str, Any], n: int, explain: bool,
                   engine: str, rows_index: Iterable[int] | None = None) -> dict[str, np.ndarray]:
    if rows_index is None:
        indices = list(range(n))
        cells = {k: _cells(column) for k, column in columns.items()}
    else:
        indices = list(rows_index)
        chosen = np.asarray(indices, dtype=np.intp)
        cells = {k: _cells(_take(column, chosen)) for k, column in columns.items()}
    prepared = prepare.prepare_rows(compiled, cells, len(indices))
    ok_rows = [p for p in prepared if p.ok]
    decisions = iter(_row_engine(engine)(compiled, [p.values for p in ok_rows]) if ok_rows else [])
    position = compiled.position
    status, errors, notes, fired = [], [], [], []
    facts: dict[str, list] = {o.key: [] for o in compiled.definition.outputs}
    for row in prepared:
        if not row.ok:
            status.append("ERROR")
            errors.append(";".join(code for _k, code in row.errors))
            notes.append("")
            fired.append("")
            for key in facts:
                facts[key].append(None)
            continue
        decision = next(decisions)
        status.append("OK")
        errors.append("")
        if row.notes or decision.notes:
            rule_notes = [((position.get(at, len(position)), 1000 + i), code) for i, (at, code) in enumerate(decision.notes)]
            notes.append(";".join(code for _k, code in sorted(row.notes + rule_notes, key=lambda item: item[0])))
        else:
            notes.append("")
        fired.append(";".join(decision.fired))
        for key in facts:
            facts[key].append(decision.facts.get(key))
    m = len(indices)
    columns_out: dict[str, np.ndarray] = {
        "status": np.array(status, dtype=object), "errors": np.array(errors, dtype=object),
        "notes": np.array(notes, dtype=object)}
    for o in compiled.definition.outputs:
        columns_out[o.key] = out.scalar_to_column(compiled.fact_types[o.key], facts[o.key], m)
    if explain:
        columns_out["fired_rules"] = np.array(fired, dtype=object)
    error_mask = columns_out["status"] == "ERROR"
    out.apply_error_rows(compiled, columns_out, error_mask)
    return columns_out


# --------------------------------------------------------------------------- vector engine
_STATUS_TEXT = np.array(["OK", "ERROR"], dtype=object)  # indexed by the error mask: no per-row str work


def _evaluate_vector(compiled: CompiledRuleset, columns: Mapping[str, Any], n: int,
                     explain: bool) -> dict[str, np.ndarray]:
    prepared = prepare.prepare_table(compiled, columns, n)
    decided = vector.decide_table(compiled, prepared)
    error = prepared.error_mask
    ok = ~error
    position = compiled.position
    result: dict[str, np.ndarray] = {
        "status": _STATUS_TEXT[error.view(np.int8)],
        "errors": out.join_codes([(code, mask) for _key, code, mask in prepared.errors], n),
    }
    notes = [(key, code, mask & ok) for key, code, mask in prepared.notes]
    notes += [((position.get(at, len(position)), 1000 + i), code, mask & ok)
              for i, (at, code, mask) in enumerate(decided.notes)]
    notes.sort(key=lambda item: item[0])
    result["notes"] = out.join_codes([(code, mask) for _key, code, mask in notes], n)
    tier = compiled.definition.tier_output
    coded: set[str] = set()
    for o in compiled.definition.outputs:
        vec = decided.env[o.key]
        if isinstance(vec, vector.CodedText):
            # labels as codes: the ERROR rows' 待定/blank go in with the one gather that builds
            # the object column (issue 8); the same values apply_error_rows would write
            result[o.key] = vec.materialize(error, out.PENDING if o.key == tier else None)
            coded.add(o.key)
            continue
        # A fact's array may be shared (an input, another fact): copy it before the in-place
        # ERROR/exact patches below, unless decide_table made it for this fact alone or the
        # conversion makes a new array anyway (dates). Copying every text output was 10 % of a run.
        owned = o.key in decided.fresh or vec.kind == "date"
        result[o.key] = out.vec_to_column(vec.kind, vec.values if owned else np.array(vec.values, copy=True))
    if explain:
        result["fired_rules"] = out.join_codes([(rule_id, mask & ok) for rule_id, mask in decided.fired], n)
    out.apply_error_rows(compiled, result, error, done=frozenset(coded))
    uncertain = np.nonzero(decided.uncertain)[0]
    if len(uncertain):
        exact = _evaluate_rows(compiled, columns, n, explain, "scalar", rows_index=uncertain)
        for name, column in result.items():
            if column.dtype == object or exact[name].dtype == object:
                column = column.astype(object) if column.dtype != object else column
                column[uncertain] = exact[name].astype(object) if exact[name].dtype != object else exact[name]
                result[name] = column
            else:
                column[uncertain] = exact[name]
    return result

"""The quarterly tier report (PRODUCT.md §7, issue 7): distribution, migration, visit calendar, workload.

Every quarter end the risk and sales teams re-grade their book and plan the next quarter — the
seed's 《保后管理制度》 classifies at quarter end and submits the next quarter's 回访计划表 by the
10th. This module turns this quarter's table (and optionally last quarter's) into one printable
workbook an analyst can hand on:

=========  =====================================================================================
汇总        counts (and balances) per tier and per group (branch / owner), percentages, charts
迁移矩阵    last quarter's tier × this quarter's, with 新增/退出, totals, upgrade/downgrade rates,
           a heat map, and the downgraded rows with the rules that decided them (why)
回访计划表  every row due by the end of next quarter, overdue first, grouped by week or month,
           with visit type, owner role and the plan due date
工作量      the time budget the ruleset allocates per owner role (and per named owner) against a
           capacity (20 working days a month), overload flagged
说明        ruleset, parameters, which columns were used, and every data warning
=========  =====================================================================================

Inputs may be raw tables (evaluated here first) or already evaluated ones (the tier column is
present — by output key, Chinese or English header — and the figures in it are used as they are,
so a reviewed and corrected table is reported as reviewed). Rows of the two quarters are matched
by a key column (default: the ruleset's first text input, e.g. customer_id / guarantee_id).

The tier order (best → worst) is read from the ruleset: the order in which decision tables that
*read* the tier column test its values (``grade = 'A'`` … ``'C'``; ``risk_class = '良好'`` …
``'风险'``), then values only ever *assigned*. Reading tables come first because a deciding table
lists its rows in precedence order — GR-3 must test 风险 before 关注, so it lists the worst first —
while tables that consume the tier enumerate it in its natural order. `tier_order=` overrides it.

Public API: `build_report` (files or frames in, workbook out), `build_report_from_frames` (the hook
the Excel macro calls), `write_report`, and the pure computations `tier_order`, `compute_migration`,
`visit_calendar`, `workload` that the tests check cell by cell.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine import api
from engine import expr as ex
from engine.compile import CompiledRuleset, render_param
from engine.errors import InputError, TierError
from engine.outputs import render_cell
from engine.rows import alias_index, map_headers, normalize_header
from engine.values import parse_column, render_text

__all__ = [
    "PENDING",
    "SHEETS",
    "Migration",
    "QuarterReport",
    "QuarterTable",
    "ReportOptions",
    "build_report",
    "build_report_from_frames",
    "compute_migration",
    "detect_balances",
    "prepare_quarter",
    "summarise",
    "tier_order",
    "visit_calendar",
    "workload",
    "write_report",
]

PENDING = "待定"  # the tier of an ERROR row (DESIGN.md "Evaluation output")
SHEETS = ("汇总", "迁移矩阵", "下调明细", "回访计划表", "工作量", "说明")
NEW, EXITED, TOTAL = "新增", "退出", "合计"
MATRIX_CORNER = "上季＼本季"
OVERDUE_LABEL = "逾期(立即回访)"
DUE_NOW_LABEL = "基准日应访(未访/当日到期)"
DEFAULT_CAPACITY_DAYS = 20.0
HOURS_PER_DAY = 8.0
MAX_LISTED = 1_000_000  # an .xlsx sheet holds 1,048,576 rows; longer lists are cut with a warning
_EPOCH = np.datetime64("1970-01-01", "D")

# Extra columns (not ruleset inputs/outputs) that name a branch-like group or the person who owns
# the row. Matched on the normalised header; the first match in column order wins.
_GROUP_WORDS = ("支行", "分行", "网点", "机构", "事业部", "部门", "团队", "区域", "片区", "branch", "department",
                "region", "team")
_OWNER_WORDS = ("客户经理", "项目经理", "理财经理", "管户", "经办", "负责人", "业务员", "销售员", "销售代表", "owner",
                "manager", "account officer")
_NAME_WORDS = ("名称", "姓名", "name")
_BALANCE_KEY = re.compile(r"(balance|amount|aum|sales)", re.IGNORECASE)
_BALANCE_ZH = ("余额", "金额", "资产", "销售额", "规模")
_BUDGET_KEY = re.compile(r"^time_budget_(days|hours)_per_(week|month|quarter|year)$")
_PER_MONTH = {"week": 52 / 12, "month": 1.0, "quarter": 1 / 3, "year": 1 / 12}


# =========================================================================== options and tables
@dataclass(frozen=True)
class ReportOptions:
    """How to read the tables and what to report; every field has a sensible default.

    `key`, `group_by`, `owner` and `balances` name columns (a header of the table, or an input key
    of the ruleset); `None` means detect. `staff` gives the headcount of an owner role
    (``{"客户经理": 3}``) so a role's capacity is known; without it the role table shows how many
    people the budget needs instead of flagging overload.
    """

    key: str | None = None
    group_by: str | None = None
    owner: str | None = None
    balances: tuple[str, ...] = ()
    capacity_days: float = DEFAULT_CAPACITY_DAYS
    hours_per_day: float = HOURS_PER_DAY
    tier_order: tuple[str, ...] | None = None
    calendar_by: str = "week"  # week | month
    staff: Mapping[str, int] = field(default_factory=dict)
    engine: str = "vector"
    as_of: dt.date | None = None  # default: the latest as-of date of this quarter's rows


@dataclass(frozen=True)
class Columns:
    """Which column of a source table plays which part (header names; None = absent)."""

    key: str | None
    tier: str
    status: str | None
    errors: str | None
    name: str | None
    group: str | None
    owner: str | None
    as_of: str | None
    next_date: str | None
    visit_status: str | None
    visit_type: str | None
    frequency: str | None
    channel: str | None
    owner_role: str | None
    support_roles: str | None
    plan_due: str | None
    budget: str | None
    fired_rules: str | None
    balances: tuple[tuple[str, str], ...]  # (label, header)
    fields: tuple[tuple[str, str], ...] = ()  # (input or output key, header): where a fact's value can be read


@dataclass(frozen=True)
class QuarterTable:
    """One quarter normalised: a frame with fixed column names, whatever the source looked like.

    `rows` columns: key, tier, status, errors, name, group, owner, as_of, next_date, visit_status,
    visit_type, frequency, channel, owner_role, support_roles, plan_due, budget_days (days per month),
    fired_rules, then one ``bal:<label>`` column per balance (yuan). Dates are ``datetime64[D]``.
    """

    rows: pd.DataFrame
    columns: Columns
    evaluated_here: bool
    source: pd.DataFrame  # the evaluated table the rows were read from


@dataclass(frozen=True)
class Migration:
    """Previous tier × current tier, with the 新增 row and the 退出 column, and the move counts.

    `matrix` is indexed by previous tier (+ 新增, 合计) with columns current tier (+ 退出, 合计).
    Upgrades/downgrades/unchanged count rows present in both quarters whose two tiers are both in
    the tier order; a move to or from 待定 (an ERROR row) or an unknown value is `incomparable`.
    """

    matrix: pd.DataFrame
    order: tuple[str, ...]
    matched: int
    comparable: int
    upgraded: int
    downgraded: int
    unchanged: int
    incomparable: int
    new: int
    exited: int
    previous_total: int
    current_total: int
    downgraded_rows: pd.DataFrame
    upgraded_rows: pd.DataFrame

    @property
    def upgrade_rate(self) -> float:
        return self.upgraded / self.comparable if self.comparable else 0.0

    @property
    def downgrade_rate(self) -> float:
        return self.downgraded / self.comparable if self.comparable else 0.0

    @property
    def unchanged_rate(self) -> float:
        return self.unchanged / self.comparable if self.comparable else 0.0


@dataclass(frozen=True)
class QuarterReport:
    """Everything the workbook shows, computed (the writer only lays it out)."""

    compiled: CompiledRuleset
    options: ReportOptions
    order: tuple[str, ...]
    tiers: tuple[str, ...]  # order + values seen in the data that the order lacks (待定 last)
    current: QuarterTable
    previous: QuarterTable | None
    as_of: dt.date
    previous_as_of: dt.date | None
    window_start: dt.date
    window_end: dt.date
    plan_due: dt.date
    by_tier: pd.DataFrame
    by_group: pd.DataFrame | None
    migration: Migration | None
    calendar: pd.DataFrame
    later: int  # rows whose next visit falls after the window
    by_role: pd.DataFrame
    by_owner: pd.DataFrame | None
    by_bucket: pd.DataFrame
    warnings: tuple[str, ...]
    output: Path | None = None


# =========================================================================== tier order, rules
def _tier_literals(node: ex.Node | None, tier: str) -> list[str]:
    """Text literals a condition compares the tier fact with (`tier = 'x'`, `tier in [...]`), in order."""
    found: list[str] = []
    if node is None:
        return found
    stack = [node]
    while stack:
        current = stack.pop(0)
        if isinstance(current, ex.Compare) and current.op == "=":
            for side, other in ((current.left, current.right), (current.right, current.left)):
                if isinstance(side, ex.Name) and side.name == tier and isinstance(other, ex.Literal) \
                        and isinstance(other.value, str):
                    found.append(other.value)
        elif isinstance(current, ex.InList) and not current.negated:
            if isinstance(current.item, ex.Name) and current.item.name == tier:
                found += [o.value for o in current.options if isinstance(o, ex.Literal) and isinstance(o.value, str)]
        elif isinstance(current, (ex.And, ex.Or)):
            stack[0:0] = list(current.items)
        elif isinstance(current, ex.Not):
            continue  # `not tier = 'x'` says nothing about order
    return found


def tier_order(compiled: CompiledRuleset, override: Sequence[str] | None = None) -> tuple[str, ...]:
    """The ruleset's tier values, best → worst (see the module docstring for why in this order)."""
    if override:
        values = [str(v).strip() for v in override if str(v).strip()]
        if len(set(values)) != len(values):
            raise TierError(f"等级顺序有重复值 / the tier order repeats a value: {', '.join(values)}")
        return tuple(values)
    tier = compiled.definition.tier_output
    seen: list[str] = []
    for decision in compiled.decisions:
        for rule in decision.rules:
            for value in _tier_literals(rule.condition, tier):
                if value not in seen:
                    seen.append(value)
    for decision in compiled.decisions:
        for rule in decision.rules:
            for name, node in rule.assignments:
                if name == tier and isinstance(node, ex.Literal) and isinstance(node.value, str) \
                        and node.value not in seen:
                    seen.append(node.value)
    if not seen:
        raise TierError(f"无法从规则集 {compiled.id} 推断等级顺序 / cannot read the tier order of {compiled.id}; "
                        f"pass it explicitly (--tier-order A,B,C)")
    return tuple(seen)


def _tier_chain(compiled: CompiledRuleset) -> tuple[set[str], set[str]]:
    """(ids of rules in decisions the tier depends on, ids of rules that decide the tier itself)."""
    tier = compiled.definition.tier_output
    producers = {out: d for d in compiled.decisions for out in d.outputs}
    needed, chain, deciding = {tier}, set(), set()
    for decision in reversed(compiled.decisions):
        if needed & set(decision.outputs):
            chain.add(decision.id)
            needed |= {name for name in decision.reads if name in producers}
            if tier in decision.outputs:
                deciding.add(decision.id)
    rules_in = {r.id for d in compiled.decisions if d.id in chain for r in d.rules}
    deciding_rules = {r.id for d in compiled.decisions if d.id in deciding for r in d.rules}
    return rules_in, deciding_rules


def _rule_texts(compiled: CompiledRuleset) -> dict[str, str]:
    """rule id → its condition with parameters bound (`total_score < 60`); '' for always-rules."""
    texts: dict[str, str] = {}
    for decision in compiled.decisions:
        for rule in decision.rules:
            texts[rule.id] = ex.to_text(rule.condition) if rule.condition is not None else ""
    return texts


def _explain(fired: str, chain: set[str], deciding: set[str], texts: Mapping[str, str]) -> tuple[str, str]:
    """(deciding rule with its condition, the chain of fired rules that led to the tier)."""
    ids = [i for i in (fired or "").split(";") if i]
    decide = [f"{i}: {texts[i]}" if texts.get(i) else i for i in ids if i in deciding]
    steps = [f"{i}({texts[i]})" if texts.get(i) else i for i in ids if i in chain and i not in deciding]
    return "; ".join(decide), "; ".join(steps)


def _in_text_order(names: Iterable[str], assignments: Sequence[tuple[str, ex.Node]]) -> list[str]:
    """The names an expression reads, in the order they are written (free_names gives a set)."""
    text = " ".join(ex.to_text(node) for _name, node in assignments)
    found = [n for n in names if re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", text)]
    return sorted(found, key=lambda n: re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", text).start())


def _evidence_names(compiled: CompiledRuleset, fired: Sequence[str],
                    deciding: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Facts a reader needs to see to believe the tier: what the fired rules' conditions test.

    A tested fact that a compute decision derived (warning_flag_count) is followed back to what it
    was computed from, so the list ends at values the table shows (其他一般预警信号数=2).
    """
    rules = {r.id: (d, r) for d in compiled.decisions for r in d.rules}
    producers = {out: d for d in compiled.decisions for out in d.outputs}
    names: list[str] = []
    queue: list[str] = []
    for rule_id in sorted(fired, key=lambda i: i not in deciding):  # the deciding rule's facts first
        if rule_id not in rules:
            continue
        decision, rule = rules[rule_id]
        if rule.condition is not None:
            queue += _in_text_order(ex.free_names(rule.condition), [("", rule.condition)])
        elif rule_id in deciding and decision.hit == "compute":
            queue += _in_text_order(decision.reads, rule.assignments)
    while queue:
        name = queue.pop(0)
        if name in names:
            continue
        names.append(name)
        producer = producers.get(name)
        if producer is not None and producer.hit == "compute":
            queue += _in_text_order(producer.reads, [a for r in producer.rules for a in r.assignments if a[0] == name])
    return names


# =========================================================================== columns
def _norm(text: object) -> str:
    return normalize_header(text)


def _find_header(frame: pd.DataFrame, wanted: str, compiled: CompiledRuleset, what: str) -> str:
    """A user-named column: a header (exact or normalised), or an input key/alias of the ruleset."""
    if wanted in frame.columns:
        return wanted
    by_norm = {_norm(c): c for c in frame.columns}
    if _norm(wanted) in by_norm:
        return by_norm[_norm(wanted)]
    inputs = map_headers(frame.columns, compiled.definition)
    for key in alias_index(compiled.definition).get(_norm(wanted), []):
        if key in inputs:
            return inputs[key]
    if wanted in inputs:
        return inputs[wanted]
    raise InputError(f"表中没有{what}列 {wanted!r} / no {what} column {wanted!r}; "
                     f"columns: {', '.join(str(c) for c in frame.columns)}")


def _output_headers(compiled: CompiledRuleset, frame: pd.DataFrame, taken: set[str]) -> dict[str, str]:
    """output key → header: the key itself first, then the Chinese / English header (as `tier fill` writes)."""
    specs = [("status", "状态", "Status"), ("errors", "错误", "Errors"), ("notes", "备注", "Notes"),
             ("fired_rules", "触发规则", "Fired rules")]
    specs += [(o.key, o.zh, o.en) for o in compiled.definition.outputs]
    found: dict[str, str] = {}
    free = [c for c in frame.columns if c not in taken]
    for key, *_ in specs:
        if key in free:
            found[key] = key
    used = set(found.values())
    by_norm: dict[str, str] = {}
    for column in free:
        if column not in used:
            by_norm.setdefault(_norm(column), column)
    for key, zh, en in specs:
        if key in found:
            continue
        for name in (zh, en):
            column = by_norm.get(_norm(name)) if name else None
            if column is not None and column not in used:
                found[key] = column
                used.add(column)
                break
    return found


def _detect_extra(frame: pd.DataFrame, taken: set[str], words: Sequence[str]) -> str | None:
    for column in frame.columns:
        if column in taken:
            continue
        text = _norm(column)
        if any(w.casefold() in text for w in words):
            return column
    return None


def detect_balances(compiled: CompiledRuleset) -> list[str]:
    """Ruleset inputs/outputs that hold a balance or an amount (keys like aum, loan_balance, monthly_avg_sales).

    Only plain numbers qualify (a ratio such as revenue_yoy_change is a fraction). An input that
    a balance output is computed from (deposit + wealth → aum) is left out so nothing is counted
    twice.
    """
    definition = compiled.definition

    def qualifies(key: str, zh: str, kind: str) -> bool:
        return kind == "number" and (bool(_BALANCE_KEY.search(key)) or any(w in (zh or "") for w in _BALANCE_ZH))

    outputs = [o.key for o in definition.outputs if qualifies(o.key, o.zh, o.type)]
    inputs = [i.key for i in definition.inputs if qualifies(i.key, i.zh, i.type)]
    components: set[str] = set()
    for decision in compiled.decisions:
        if decision.hit == "compute" and set(decision.outputs) & set(outputs):
            components |= set(decision.reads)
    return [k for k in outputs] + [k for k in inputs if k not in components]


def _label_of(compiled: CompiledRuleset, key: str) -> str:
    definition = compiled.definition
    for item in (*definition.outputs, *definition.inputs):
        if item.key == key:
            return re.sub(r"\s*(\([^()]*\)|（[^（）]*）)\s*$", "", item.zh or key)
    return key


def _resolve(compiled: CompiledRuleset, frame: pd.DataFrame, options: ReportOptions,
             warnings: list[str], quarter: str) -> Columns:
    definition = compiled.definition
    inputs = {k: str(v) for k, v in map_headers(frame.columns, definition).items()}
    outs = _output_headers(compiled, frame, set(inputs.values()))
    taken = set(inputs.values()) | set(outs.values())

    if options.key:
        key = _find_header(frame, options.key, compiled, "匹配键 / key")
    else:
        first_text = next((i.key for i in definition.inputs if i.type in ("text", "enum")), None)
        key = inputs.get(first_text) if first_text else None
    group = owner = None
    if options.group_by:
        group = _find_header(frame, options.group_by, compiled, "分组 / group")
    if options.owner:
        owner = _find_header(frame, options.owner, compiled, "负责人 / owner")
    if owner is None:
        owner = _detect_extra(frame, taken | {key, group}, _OWNER_WORDS)
    if group is None and not options.group_by:
        group = _detect_extra(frame, taken | {key, owner}, _GROUP_WORDS)
    name = inputs.get("customer_name") or _detect_extra(frame, {key, group, owner} | set(outs.values()), _NAME_WORDS)

    balances: list[tuple[str, str]] = []
    if options.balances:
        for wanted in options.balances:
            header = outs.get(wanted) or _find_header(frame, wanted, compiled, "余额 / balance")
            balances.append((_label_of(compiled, wanted) if wanted in outs or wanted in inputs else str(header),
                             header))
    else:
        for key_name in detect_balances(compiled):
            header = outs.get(key_name) or inputs.get(key_name)
            if header is not None:
                balances.append((_label_of(compiled, key_name), header))
        for column in frame.columns:  # e.g. 在保余额 / 担保金额 beside a guarantee table
            text = str(column)
            if column in taken or column in (key, group, owner, name):
                continue
            if any(w in text for w in ("余额", "金额")) or re.search(r"balance|amount", text, re.IGNORECASE):
                balances.append((re.sub(r"\s*(\([^()]*\)|（[^（）]*）)\s*$", "", text), column))

    def out_like(pred) -> str | None:
        for o in definition.outputs:
            if pred(o) and o.key in outs:
                return outs[o.key]
        return None

    budget = out_like(lambda o: bool(_BUDGET_KEY.match(o.key)))
    if budget is None and any(_BUDGET_KEY.match(o.key) for o in definition.outputs):
        warnings.append(f"{quarter}: 表中没有时间预算列,工作量为 0 / no time-budget column in the table")
    return Columns(
        key=key, tier=outs[definition.tier_output], status=outs.get("status"), errors=outs.get("errors"),
        name=name, group=group, owner=owner, as_of=inputs.get("as_of_date"),
        next_date=out_like(lambda o: o.type == "date" and o.key.startswith("next_")),
        visit_status=out_like(lambda o: o.key.endswith("_status")),
        visit_type=outs.get("visit_type"),
        frequency=out_like(lambda o: o.key.endswith("_frequency")) or outs.get("contact_interval_days"),
        channel=out_like(lambda o: o.key.endswith("_channel")),
        owner_role=outs.get("owner_role"), support_roles=outs.get("support_roles"),
        plan_due=outs.get("plan_due_date"), budget=budget, fired_rules=outs.get("fired_rules"),
        balances=tuple(balances), fields=tuple({**inputs, **outs}.items()))


# =========================================================================== value helpers
def _texts(series: pd.Series | None, n: int) -> np.ndarray:
    """Cells as trimmed text ('' for blank); numbers as an analyst writes them (12, not 12.0)."""
    if series is None:
        return np.full(n, "", dtype=object)
    result = np.empty(n, dtype=object)
    for i, value in enumerate(series.to_numpy(dtype=object)):
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
            result[i] = ""
        elif isinstance(value, str):
            result[i] = value.strip()
        elif isinstance(value, (pd.Timestamp, dt.datetime)):
            result[i] = value.strftime("%Y-%m-%d")
        elif isinstance(value, dt.date):
            result[i] = value.isoformat()
        else:
            result[i] = render_text(value).strip()
    return result


def _dates(series: pd.Series | None, n: int) -> np.ndarray:
    if series is None:
        return np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    if series.dtype.kind == "M":
        return series.to_numpy().astype("datetime64[D]")
    days = parse_column(series.reset_index(drop=True), "date").values
    result = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    present = ~np.isnan(days)
    result[present] = _EPOCH + days[present].astype(np.int64)
    return result


def _numbers(series: pd.Series | None, n: int) -> np.ndarray:
    if series is None:
        return np.full(n, np.nan)
    if series.dtype.kind in "fiu":
        return series.to_numpy(dtype=float)
    return parse_column(series.reset_index(drop=True), "number").values.astype(float)


def _as_date(value: Any) -> dt.date:
    return pd.Timestamp(value).date()


def _quarter_start(day: dt.date, later: int = 0) -> dt.date:
    index = (day.year * 4 + (day.month - 1) // 3) + later
    return dt.date(index // 4, index % 4 * 3 + 1, 1)


def _frequency_texts(series: pd.Series | None, n: int, header: str | None) -> np.ndarray:
    texts = _texts(series, n)
    if header is not None and series is not None and _norm(header) in ("contact_interval_days", "联系间隔"):
        return np.array([f"每{t}天" if t else "" for t in texts], dtype=object)
    return texts


# =========================================================================== one quarter
def prepare_quarter(compiled: CompiledRuleset, frame: pd.DataFrame, options: ReportOptions | None = None,
                    quarter: str = "本季", warnings: list[str] | None = None) -> QuarterTable:
    """A raw or evaluated table → `QuarterTable` (evaluating it first when the tier column is absent)."""
    options = options or ReportOptions()
    warnings = warnings if warnings is not None else []
    frame = _frame_of(frame)
    frame = frame.reset_index(drop=True)
    outs = _output_headers(compiled, frame, {str(v) for v in map_headers(frame.columns, compiled.definition).values()})
    evaluated_here = compiled.definition.tier_output not in outs
    if evaluated_here:
        frame = api.evaluate(compiled, frame, engine=options.engine, explain=True,
                             sheet=str(frame.attrs.get("sheet", ""))).reset_index(drop=True)
    columns = _resolve(compiled, frame, options, warnings, quarter)
    n = len(frame)

    def col(header: str | None) -> pd.Series | None:
        return frame[header] if header is not None else None

    tier = _texts(col(columns.tier), n)
    status = _texts(col(columns.status), n)
    if columns.status is None:
        status = np.where((tier == "") | (tier == PENDING), "ERROR", "OK").astype(object)
    tier = np.where(tier == "", PENDING, tier).astype(object)
    data: dict[str, Any] = {
        "key": _texts(col(columns.key), n),
        "tier": tier,
        "status": status,
        "errors": _texts(col(columns.errors), n),
        "name": _texts(col(columns.name), n),
        "group": _texts(col(columns.group), n),
        "owner": _texts(col(columns.owner), n),
        "as_of": _dates(col(columns.as_of), n),
        "next_date": _dates(col(columns.next_date), n),
        "visit_status": _texts(col(columns.visit_status), n),
        "visit_type": _texts(col(columns.visit_type), n),
        "frequency": _frequency_texts(col(columns.frequency), n, columns.frequency),
        "channel": _texts(col(columns.channel), n),
        "owner_role": _texts(col(columns.owner_role), n),
        "support_roles": _texts(col(columns.support_roles), n),
        "plan_due": _dates(col(columns.plan_due), n),
        "budget_days": _budget_days(compiled, frame, columns, options, n),
        "fired_rules": _texts(col(columns.fired_rules), n),
        "row": np.arange(n),
    }
    for label, header in columns.balances:
        data[f"bal:{label}"] = _numbers(frame[header], n)
    rows = pd.DataFrame(data)
    if columns.key is None:
        warnings.append(f"{quarter}: 没有匹配键列,按行号匹配 / no key column; rows are matched by position")
        rows["key"] = [f"#{i + 1}" for i in range(n)]
    return QuarterTable(rows=rows, columns=columns, evaluated_here=evaluated_here, source=frame)


def _frame_of(table: Any) -> pd.DataFrame:
    """A DataFrame, a list of dicts, or a header row followed by data rows (what a macro reads from a sheet)."""
    if isinstance(table, pd.DataFrame):
        return table
    rows = list(table)
    if rows and isinstance(rows[0], (list, tuple)):
        header, *data = rows
        return pd.DataFrame([list(r) for r in data], columns=[str(h) for h in header], dtype=object)
    return pd.DataFrame(rows)


def _budget_days(compiled: CompiledRuleset, frame: pd.DataFrame, columns: Columns, options: ReportOptions,
                 n: int) -> np.ndarray:
    """The row's time budget in working days per month (days/month; days/year ÷ 12; hours/month ÷ 8)."""
    if columns.budget is None:
        return np.zeros(n)
    key = next((o.key for o in compiled.definition.outputs if _BUDGET_KEY.match(o.key)), "")
    match = _BUDGET_KEY.match(key)
    unit, period = match.groups() if match else ("days", "month")
    values = np.nan_to_num(_numbers(frame[columns.budget], n), nan=0.0) * _PER_MONTH[period]
    if unit == "hours":
        values = values / options.hours_per_day
    return values


# =========================================================================== computations
def _all_tiers(order: Sequence[str], *tables: pd.DataFrame) -> tuple[str, ...]:
    extra: list[str] = []
    for table in tables:
        for value in table["tier"]:
            if value not in order and value not in extra and value != PENDING:
                extra.append(value)
    pending = any((t["tier"] == PENDING).any() for t in tables)
    return (*order, *extra, *((PENDING,) if pending else ()))


def _dedupe(rows: pd.DataFrame, quarter: str, warnings: list[str]) -> pd.DataFrame:
    blank = rows["key"] == ""
    if blank.any():
        warnings.append(f"{quarter}: {int(blank.sum())} 行匹配键为空,不参与迁移 / rows with a blank key are "
                        f"left out of the migration")
    keyed = rows[~blank]
    dup = keyed["key"].duplicated(keep="first")
    if dup.any():
        shown = ", ".join(sorted(set(keyed.loc[dup, "key"]))[:10])
        warnings.append(f"{quarter}: {int(dup.sum())} 行匹配键重复,迁移只取第一行 / duplicated keys, "
                        f"the first row is used: {shown}")
    return keyed[~dup]


def compute_migration(previous: pd.DataFrame, current: pd.DataFrame, order: Sequence[str],
                      warnings: list[str] | None = None,
                      explain: Any = None) -> Migration:
    """The migration matrix and move counts between two normalised quarters (`QuarterTable.rows`)."""
    warnings = warnings if warnings is not None else []
    prev = _dedupe(previous, "上季", warnings)
    cur = _dedupe(current, "本季", warnings)
    tiers = list(_all_tiers(order, prev, cur))
    rank = {t: i for i, t in enumerate(order)}
    joined = prev[["key", "tier"]].merge(cur, on="key", how="outer", suffixes=("_prev", ""), indicator=True)
    joined = joined.rename(columns={"tier_prev": "prev_tier"})
    rows_index = [*tiers, NEW, TOTAL]
    cols_index = [*tiers, EXITED, TOTAL]
    matrix = pd.DataFrame(0, index=rows_index, columns=cols_index, dtype=np.int64)
    both = joined[joined["_merge"] == "both"]
    for (p, c), count in both.groupby(["prev_tier", "tier"]).size().items():
        matrix.loc[p, c] += int(count)
    new_rows = joined[joined["_merge"] == "right_only"]
    for c, count in new_rows.groupby("tier").size().items():
        matrix.loc[NEW, c] += int(count)
    gone = joined[joined["_merge"] == "left_only"]
    for p, count in gone.groupby("prev_tier").size().items():
        matrix.loc[p, EXITED] += int(count)
    body_rows, body_cols = [*tiers, NEW], [*tiers, EXITED]
    matrix[TOTAL] = matrix.loc[:, body_cols].sum(axis=1)
    matrix.loc[TOTAL, :] = matrix.loc[body_rows, :].sum(axis=0)

    prev_rank = both["prev_tier"].map(rank)
    cur_rank = both["tier"].map(rank)
    comparable = prev_rank.notna() & cur_rank.notna()
    up = comparable & (cur_rank < prev_rank)
    down = comparable & (cur_rank > prev_rank)
    same = comparable & (cur_rank == prev_rank)
    moved = both.assign(steps=(cur_rank - prev_rank))
    downgraded_rows = moved[down].copy()
    upgraded_rows = moved[up].copy()
    for table in (downgraded_rows, upgraded_rows):
        table["steps"] = table["steps"].abs().astype(int)
    downgraded_rows = downgraded_rows.sort_values(["steps", "tier", "key"], ascending=[False, True, True],
                                                  key=lambda s: s.map(rank) if s.name == "tier" else s)
    if explain is not None:
        downgraded_rows = explain(downgraded_rows)
    return Migration(
        matrix=matrix, order=tuple(order), matched=len(both), comparable=int(comparable.sum()),
        upgraded=int(up.sum()), downgraded=int(down.sum()), unchanged=int(same.sum()),
        incomparable=int((~comparable).sum()), new=len(new_rows), exited=len(gone),
        previous_total=len(prev), current_total=len(cur),
        downgraded_rows=downgraded_rows.drop(columns=["_merge"]).reset_index(drop=True),
        upgraded_rows=upgraded_rows.drop(columns=["_merge"]).reset_index(drop=True))


def summarise(current: pd.DataFrame, previous: pd.DataFrame | None, tiers: Sequence[str]
              ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(per-tier counts, shares and balances; per-group × tier counts or None when there is no group)."""
    balance_cols = [c for c in current.columns if c.startswith("bal:")]
    total = len(current)
    counts = current["tier"].value_counts()
    by_tier = pd.DataFrame(index=pd.Index(list(tiers), name="tier"))
    by_tier["count"] = [int(counts.get(t, 0)) for t in tiers]
    by_tier["share"] = by_tier["count"] / total if total else 0.0
    if previous is not None:
        prev_counts = previous["tier"].value_counts()
        by_tier["prev_count"] = [int(prev_counts.get(t, 0)) for t in tiers]
        by_tier["prev_share"] = by_tier["prev_count"] / len(previous) if len(previous) else 0.0
        by_tier["change"] = by_tier["count"] - by_tier["prev_count"]
    for column in balance_cols:
        sums = current.groupby("tier")[column].sum(min_count=1)
        values = [float(sums.get(t, 0.0)) if not pd.isna(sums.get(t, np.nan)) else 0.0 for t in tiers]
        by_tier[column] = values
        grand = sum(values)
        by_tier[column + ":share"] = [v / grand if grand else 0.0 for v in values]
    by_group = None
    if (current["group"] != "").any():
        groups = current.assign(group=current["group"].where(current["group"] != "", "(未填)"))
        table = pd.crosstab(groups["group"], groups["tier"]).reindex(columns=list(tiers), fill_value=0)
        table["total"] = table.sum(axis=1)
        table["share"] = table["total"] / total if total else 0.0
        for column in balance_cols:
            table[column] = groups.groupby("group")[column].sum(min_count=1).reindex(table.index).fillna(0.0)
        by_group = table.sort_values(["total"], ascending=False, kind="stable")
    return by_tier, by_group


def visit_calendar(current: pd.DataFrame, order: Sequence[str], as_of: dt.date, window_end: dt.date,
                   plan_due: dt.date, by: str = "week") -> tuple[pd.DataFrame, int, pd.DataFrame]:
    """Rows due by `window_end`: overdue first, then due now, then by week (or month) of the next date.

    Returns (calendar rows with a `bucket` label and `bucket_order`, the count of rows due later,
    visits per bucket). ERROR rows (no next date) come last in their own bucket so nobody is lost.
    """
    if by not in ("week", "month"):
        raise TierError(f"--by 只能是 week 或 month / calendar grouping must be week or month, got {by!r}")
    rank = {t: i for i, t in enumerate(order)}
    rows = current.copy()
    as_of64 = np.datetime64(as_of, "D")
    end64 = np.datetime64(window_end, "D")
    ok = rows["status"] == "OK"
    has_date = rows["next_date"].notna()
    overdue = ok & (rows["visit_status"] == "逾期")
    due_now = ok & ~overdue & has_date & (rows["next_date"] <= as_of64)
    in_window = ok & ~overdue & has_date & (rows["next_date"] > as_of64) & (rows["next_date"] <= end64)
    later = int((ok & ~overdue & has_date & (rows["next_date"] > end64)).sum())
    errors = ~ok
    labels = np.full(len(rows), "", dtype=object)
    bucket_order = np.zeros(len(rows), dtype=np.int64)
    labels[overdue.to_numpy()] = OVERDUE_LABEL
    labels[due_now.to_numpy()] = DUE_NOW_LABEL
    bucket_order[due_now.to_numpy()] = 1
    first_day = as_of + dt.timedelta(days=1)
    monday = first_day - dt.timedelta(days=first_day.weekday())

    def bucket_of(day: dt.date) -> tuple[int, str]:
        if by == "week":
            week = (day - monday).days // 7
            start = monday + dt.timedelta(days=7 * week)
            stop = min(start + dt.timedelta(days=6), window_end)
            return 2 + week, f"第{week + 1}周 {max(start, first_day):%m-%d}~{stop:%m-%d}"
        months = (day.year - first_day.year) * 12 + day.month - first_day.month
        return 2 + months, f"{day.year}年{day.month}月"

    for index, day in rows.loc[in_window, "next_date"].items():
        bucket_order[index], labels[index] = bucket_of(pd.Timestamp(day).date())
    labels[errors.to_numpy()] = f"{PENDING}(数据错误,未排期)"
    bucket_order[errors.to_numpy()] = 10_000
    keep = (overdue | due_now | in_window | errors).to_numpy()
    rows["bucket"] = labels
    rows["bucket_order"] = bucket_order
    rows["tier_rank"] = rows["tier"].map(lambda t: -rank.get(t, len(rank)))
    rows["plan_due"] = rows["plan_due"].where(rows["plan_due"].notna(), np.datetime64(plan_due, "D"))
    calendar = rows[keep].sort_values(["bucket_order", "next_date", "tier_rank", "key"], kind="stable")
    calendar = calendar.drop(columns=["tier_rank"]).reset_index(drop=True)
    # every week (month) of the window, empty ones too: a quiet week is information for the planner
    counts = calendar.groupby("bucket_order").size()
    every: dict[int, str] = dict(calendar.groupby("bucket_order")["bucket"].first())
    day = first_day
    while day <= window_end:
        order_index, label = bucket_of(day)
        every.setdefault(order_index, label)
        day += dt.timedelta(days=1)
    buckets = pd.DataFrame([(label, int(counts.get(index, 0))) for index, label in sorted(every.items())],
                           columns=["bucket", "visits"])
    return calendar, later, buckets


def workload(current: pd.DataFrame, capacity_days: float = DEFAULT_CAPACITY_DAYS,
             staff: Mapping[str, int] | None = None, tiers: Sequence[str] = ()
             ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(per owner role, per named owner or None): accounts, days per month, capacity, utilisation, flag.

    A role's capacity is its headcount (`staff`) × capacity_days; with no headcount the role row
    says how many people the budget needs (`fte`) and is not flagged. A named owner is one person.
    """
    staff = dict(staff or {})
    rows = current[(current["status"] == "OK") & (current["owner_role"] != "")]
    role_order = list(dict.fromkeys(rows.assign(r=rows["tier"].map({t: i for i, t in enumerate(tiers)}))
                                    .sort_values("r", kind="stable")["owner_role"]))
    by_role = pd.DataFrame(index=pd.Index(role_order, name="owner_role"))
    grouped = rows.groupby("owner_role")
    by_role["accounts"] = grouped.size().reindex(role_order).fillna(0).astype(int)
    by_role["days"] = grouped["budget_days"].sum().reindex(role_order).fillna(0.0)
    by_role["fte"] = by_role["days"] / capacity_days if capacity_days else np.nan
    by_role["staff"] = [staff.get(r) for r in role_order]
    by_role["capacity"] = [staff[r] * capacity_days if r in staff else np.nan for r in role_order]
    by_role["utilisation"] = by_role["days"] / by_role["capacity"]
    by_role["flag"] = [_flag(u) if not pd.isna(u) else f"需 {math.ceil(f - 1e-9)} 人" if f > 0 else ""
                       for u, f in zip(by_role["utilisation"], by_role["fte"])]
    by_owner = None
    owned = current[(current["status"] == "OK") & (current["owner"] != "")]
    if len(owned):
        grouped = owned.groupby("owner")
        by_owner = pd.DataFrame({"accounts": grouped.size(), "days": grouped["budget_days"].sum()})
        for tier in tiers:
            by_owner[f"tier:{tier}"] = owned[owned["tier"] == tier].groupby("owner").size().reindex(
                by_owner.index).fillna(0).astype(int)
        by_owner["roles"] = grouped["owner_role"].agg(lambda s: "、".join(dict.fromkeys(v for v in s if v)))
        by_owner["capacity"] = capacity_days
        by_owner["utilisation"] = by_owner["days"] / capacity_days if capacity_days else np.nan
        by_owner["flag"] = [_flag(u) for u in by_owner["utilisation"]]
        by_owner = by_owner.sort_values(["days"], ascending=False, kind="stable")
        by_owner.index.name = "owner"
    return by_role, by_owner


def _flag(utilisation: float) -> str:
    if utilisation > 1 + 1e-9:
        return "超负荷"
    if utilisation >= 0.8:
        return "接近满负荷"
    return "正常"


# =========================================================================== the report
def _read(path: str | os.PathLike, compiled: CompiledRuleset, sheet: str | None) -> pd.DataFrame:
    from engine import io as tio

    known = set(alias_index(compiled.definition))
    for o in compiled.definition.outputs:
        known |= {_norm(n) for n in (o.key, o.zh, o.en) if n}
    frame = tio.read_table(path, sheet=sheet, known_headers=known)
    # a header clash found later, on the frame, could not say which of the two files it is in
    map_headers(frame.columns, compiled.definition, sheet=sheet or "", source=Path(path).name)
    return frame


def _report_as_of(table: QuarterTable, override: dt.date | None, quarter: str, warnings: list[str]) -> dt.date | None:
    if override is not None:
        return override
    rows = table.rows
    dates = rows.loc[rows["as_of"].notna(), "as_of"]
    if dates.empty:
        return None
    distinct = sorted(set(dates.to_numpy()))
    if len(distinct) > 1:
        warnings.append(f"{quarter}: 基准日不一致 ({len(distinct)} 个不同日期),取最晚的 {_as_date(distinct[-1])} / "
                        f"rows carry different as-of dates; the latest is used")
    return _as_date(distinct[-1])


def build_report_from_frames(ruleset: Any, current: Any, previous: Any = None, output: str | os.PathLike | None = None,
                             params: Mapping[str, Any] | None = None, options: ReportOptions | None = None,
                             **option_fields: Any) -> QuarterReport:
    """The report from tables already in memory (DataFrames, lists of dicts, header row + rows).

    The hook for `addin/macros.py`: the macro reads the two sheets, calls this, and opens `output`.
    Keyword arguments are `ReportOptions` fields (key=, group_by=, owner=, capacity_days=, ...).
    Without `output` nothing is written (the computed report is returned for inspection).
    """
    options = replace(options or ReportOptions(), **option_fields)
    compiled = api.compile(ruleset, params)
    warnings: list[str] = []
    order = tier_order(compiled, options.tier_order)
    cur = prepare_quarter(compiled, current, options, "本季", warnings)
    prev = prepare_quarter(compiled, previous, options, "上季", warnings) if previous is not None else None
    as_of = _report_as_of(cur, options.as_of, "本季", warnings)
    if as_of is None:
        raise InputError("本季表没有基准日(评估日期)列或全部为空 / this quarter's table has no as-of date; "
                         "add the as-of column or pass as_of")
    previous_as_of = _report_as_of(prev, None, "上季", warnings) if prev is not None else None
    window_start = _quarter_start(as_of, 1)
    window_end = _quarter_start(as_of, 2) - dt.timedelta(days=1)
    plans = cur.rows.loc[cur.rows["plan_due"].notna(), "plan_due"]
    plan_due = _as_date(plans.mode().iloc[0]) if len(plans) else window_start + dt.timedelta(days=9)
    tables = [cur.rows] + ([prev.rows] if prev is not None else [])
    tiers = _all_tiers(order, *tables)
    unknown = [t for t in tiers if t not in order and t != PENDING]
    if unknown:
        warnings.append(f"等级值不在规则集的等级顺序中,不计升降级 / tier values outside the ruleset's order "
                        f"(not counted as up/down): {', '.join(unknown)}")
    by_tier, by_group = summarise(cur.rows, prev.rows if prev is not None else None, tiers)
    migration = None
    if prev is not None:
        chain, deciding = _tier_chain(compiled)
        texts = _rule_texts(compiled)
        prev_fired = dict(zip(prev.rows["key"], prev.rows["fired_rules"]))

        fields = dict(cur.columns.fields)
        kinds = {o.key: (o.type, o.decimals) for o in compiled.definition.outputs}

        cells: dict[str, np.ndarray] = {}
        names_of: dict[str, list[str]] = {}

        def evidence(fired: str, row: int) -> str:
            if fired not in names_of:
                names_of[fired] = _evidence_names(compiled, [i for i in fired.split(";") if i in chain], deciding)
            shown = []
            for name in names_of[fired]:
                header = fields.get(name)
                if header is None:
                    continue
                if header not in cells:
                    cells[header] = cur.source[header].to_numpy(dtype=object)
                value = cells[header][row]
                if name in kinds:
                    text = render_cell(value, *kinds[name])
                else:
                    text = str(_texts(pd.Series([value], dtype=object), 1)[0])
                shown.append(f"{_label_of(compiled, name)}={text if text != '' else '(空)'}")
            return "; ".join(shown)

        def explain(rows: pd.DataFrame) -> pd.DataFrame:
            rows = rows.copy()
            now = [_explain(f, chain, deciding, texts) for f in rows["fired_rules"]]
            before = [_explain(prev_fired.get(k, ""), chain, deciding, texts) for k in rows["key"]]
            rows["rule"] = [d for d, _s in now]
            rows["reason"] = [s for _d, s in now]
            rows["evidence"] = [evidence(f, int(r)) for f, r in zip(rows["fired_rules"], rows["row"])]
            rows["prev_rule"] = [d for d, _s in before]
            return rows

        migration = compute_migration(prev.rows, cur.rows, order, warnings, explain=explain)
        if not (cur.rows["fired_rules"] != "").any():
            warnings.append("本季表没有 fired_rules 列,下调原因无法列出 / no fired_rules column: the reasons of "
                            "downgrades cannot be shown (evaluate with --explain, or pass the raw table)")
    calendar, later, buckets = visit_calendar(cur.rows, order, as_of, window_end, plan_due, options.calendar_by)
    by_role, by_owner = workload(cur.rows, options.capacity_days, options.staff, order)
    for what, size in (("回访计划表", len(calendar)), ("下调明细", migration.downgraded if migration else 0)):
        if size > MAX_LISTED:
            warnings.append(f"{what} 有 {size:,} 行,超过单个工作表可容纳的行数,只列出前 {MAX_LISTED:,} 行 / "
                            f"the list is cut at {MAX_LISTED:,} rows (an .xlsx sheet holds 1,048,576)")
    errors = int((cur.rows["status"] != "OK").sum())
    if errors:
        warnings.append(f"本季 {errors} 行数据错误(等级{PENDING}),未计入工作量、未排期 / ERROR rows are "
                        f"not planned nor budgeted; fix them and re-run")
    report = QuarterReport(
        compiled=compiled, options=options, order=order, tiers=tiers, current=cur, previous=prev, as_of=as_of,
        previous_as_of=previous_as_of, window_start=window_start, window_end=window_end, plan_due=plan_due,
        by_tier=by_tier, by_group=by_group, migration=migration, calendar=calendar, later=later,
        by_role=by_role, by_owner=by_owner, by_bucket=buckets, warnings=tuple(warnings))
    if output is not None:
        path = write_report(report, output)
        report = replace(report, output=path)
    return report


def build_report(ruleset: Any, current: Any, previous: Any = None, output: str | os.PathLike | None = None,
                 params: Mapping[str, Any] | None = None, sheet: str | None = None,
                 previous_sheet: str | None = None, options: ReportOptions | None = None,
                 **option_fields: Any) -> QuarterReport:
    """`tier report`: tables from files (.csv/.xlsx/.parquet) or frames → the report workbook."""
    compiled = api.compile(ruleset, params)
    if isinstance(current, (str, os.PathLike)):
        current = _read(current, compiled, sheet)
    if isinstance(previous, (str, os.PathLike)):
        previous = _read(previous, compiled, previous_sheet or sheet)
    return build_report_from_frames(compiled, current, previous, output, options=options, **option_fields)


# =========================================================================== the workbook
def write_report(report: QuarterReport, path: str | os.PathLike) -> Path:
    """Lay the computed report out as an .xlsx (atomic: the target is replaced only when complete)."""
    from engine.io import atomic_path

    target = Path(path)
    if target.suffix.lower() != ".xlsx":
        raise InputError(f"报告须为 .xlsx / the report must be an .xlsx file, got {target.name}")
    with atomic_path(target) as tmp:
        _Writer(report, tmp).write()
    return target


_COLOURS = ("#2E75B6", "#70AD47", "#FFC000", "#ED7D31", "#C00000", "#7030A0", "#5B9BD5", "#A5A5A5", "#264478",
            "#9E480E", "#636363")


class _Writer:
    """Builds the workbook with XlsxWriter: one method per sheet, shared formats."""

    def __init__(self, report: QuarterReport, path: Path) -> None:
        import xlsxwriter

        self.report = report
        self.book = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_urls": False,
                                                    "strings_to_numbers": False, "nan_inf_to_errors": True})
        self.book.set_properties({"title": f"{self._title()} 季度分级报告", "subject": "tierbook quarterly tier report",
                                  "author": "tierbook", "comments": f"{report.compiled.id} {report.compiled.version}"})
        base = {"font_name": "Microsoft YaHei", "font_size": 10, "valign": "vcenter"}
        self.base = base

        def fmt(**extra: Any):
            return self.book.add_format({**base, **extra})

        border = {"border": 1, "border_color": "#BFBFBF"}
        self.f_title = fmt(bold=True, font_size=15, font_color="#1F3864")
        self.f_sub = fmt(font_color="#595959")
        self.f_section = fmt(bold=True, font_size=12, font_color="#1F3864", bottom=2, bottom_color="#2E75B6")
        self.f_head = fmt(bold=True, font_color="#FFFFFF", bg_color="#2E75B6", align="center", text_wrap=True, **border)
        self.f_head_left = fmt(bold=True, font_color="#FFFFFF", bg_color="#2E75B6", text_wrap=True, **border)
        self.f_text = fmt(**border)
        self.f_wrap = fmt(text_wrap=True, valign="top", **border)
        self.f_center = fmt(align="center", **border)
        self.f_int = fmt(num_format="#,##0", **border)
        self.f_num1 = fmt(num_format="#,##0.0", **border)
        self.f_num2 = fmt(num_format="#,##0.00", **border)
        self.f_pct = fmt(num_format="0.0%", **border)
        self.f_date = fmt(num_format="yyyy-mm-dd", align="center", **border)
        self.f_label = fmt(bold=True, bg_color="#DDEBF7", **border)
        self.f_total_label = fmt(bold=True, bg_color="#D9D9D9", **border)
        self.f_total_int = fmt(bold=True, bg_color="#D9D9D9", num_format="#,##0", **border)
        self.f_total_num2 = fmt(bold=True, bg_color="#D9D9D9", num_format="#,##0.00", **border)
        self.f_total_pct = fmt(bold=True, bg_color="#D9D9D9", num_format="0.0%", **border)
        self.f_group = fmt(bold=True, bg_color="#DDEBF7", font_color="#1F3864", **border)
        self.f_overdue_group = fmt(bold=True, bg_color="#F8CBAD", font_color="#9C0006", **border)
        self.f_bad = fmt(bg_color="#FFC7CE", font_color="#9C0006", bold=True, align="center", **border)
        self.f_warn = fmt(bg_color="#FFEB9C", font_color="#9C5700", align="center", **border)
        self.f_good = fmt(bg_color="#C6EFCE", font_color="#006100", align="center", **border)
        self.f_top_center = fmt(align="center", valign="top", **border)
        self.f_top_bad = fmt(bg_color="#FFC7CE", font_color="#9C0006", bold=True, align="center", valign="top",
                             **border)
        self.f_note = fmt(font_color="#595959", text_wrap=True, valign="top")
        self.f_diag = fmt(num_format="#,##0", bold=True, **border)
        self.f_total_signed = fmt(bold=True, bg_color="#D9D9D9", num_format="+#,##0;[Red]-#,##0;0", **border)
        self.f_signed = fmt(num_format="+#,##0;[Red]-#,##0;0", **border)
        self.colours = _tier_colours(report.tiers, report.order)

    # ------------------------------------------------------------------ helpers
    def _title(self) -> str:
        title = self.report.compiled.definition.title
        return title.zh or title.en or self.report.compiled.id

    def _page(self, sheet: Any, repeat: tuple[int, int] | None, freeze: tuple[int, int] | None) -> None:
        """Printable: A4 landscape, one page wide, header rows repeated, page numbers in the footer."""
        sheet.set_landscape()
        sheet.set_paper(9)
        sheet.fit_to_pages(1, 0)
        sheet.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
        sheet.center_horizontally()
        sheet.set_header(f"&L&8{self._title()}  季度分级报告&R&8基准日 {self.report.as_of:%Y-%m-%d}")
        sheet.set_footer("&L&8&A&R&8第 &P 页 / 共 &N 页")
        if repeat is not None:
            sheet.repeat_rows(*repeat)
        if freeze is not None:
            sheet.freeze_panes(*freeze)

    def _heading(self, sheet: Any, title: str, subtitle: str, width: int) -> None:
        sheet.merge_range(0, 0, 0, max(width - 1, 1), title, self.f_title)
        sheet.merge_range(1, 0, 1, max(width - 1, 1), subtitle, self.f_sub)
        sheet.set_row(0, 24)

    def _balance_cols(self) -> list[str]:
        return [c for c in self.report.current.rows.columns if c.startswith("bal:")]

    def write(self) -> None:
        self._summary()
        self._migration()
        self._downgrades()
        self._calendar()
        self._workload()
        self._notes()
        self.book.close()

    # ------------------------------------------------------------------ 1. 汇总
    def _summary(self) -> None:
        report = self.report
        sheet = self.book.add_worksheet(SHEETS[0])
        by_tier = report.by_tier
        has_prev = report.previous is not None
        balances = self._balance_cols()
        heads = ["等级", "本季户数", "本季占比"]
        if has_prev:
            heads += ["上季户数", "上季占比", "增减"]
        for column in balances:
            heads += [f"{column[4:]}(万元)", f"{column[4:]}占比"]
        width = max(len(heads), 8)
        prev_text = f";上季基准日 {report.previous_as_of:%Y-%m-%d}" if has_prev and report.previous_as_of else ""
        self._heading(sheet, f"{self._title()} — 季度分级汇总",
                      f"规则集 {report.compiled.id} {report.compiled.version};本季基准日 {report.as_of:%Y-%m-%d}"
                      f"{prev_text};本季 {len(report.current.rows)} 行", width)
        row = 3
        sheet.write(row - 1, 0, "一、各等级户数与占比", self.f_section)
        sheet.write_row(row, 0, heads, self.f_head)
        header_row = row
        first = row + 1
        for tier in report.tiers:
            row += 1
            line = by_tier.loc[tier]
            values: list[tuple[Any, Any]] = [(tier, self.f_label), (int(line["count"]), self.f_int),
                                             (float(line["share"]), self.f_pct)]
            if has_prev:
                values += [(int(line["prev_count"]), self.f_int), (float(line["prev_share"]), self.f_pct),
                           (int(line["change"]), self.f_signed)]
            for column in balances:
                values += [(float(line[column]) / 10000, self.f_num2), (float(line[column + ":share"]), self.f_pct)]
            for col, (value, style) in enumerate(values):
                sheet.write(row, col, value, style)
        last = row
        row += 1
        totals: list[tuple[Any, Any]] = [(TOTAL, self.f_total_label), (int(by_tier["count"].sum()), self.f_total_int),
                                         (1.0 if len(report.current.rows) else 0.0, self.f_total_pct)]
        if has_prev:
            totals += [(int(by_tier["prev_count"].sum()), self.f_total_int),
                       (1.0 if len(report.previous.rows) else 0.0, self.f_total_pct),  # type: ignore[union-attr]
                       (int(by_tier["change"].sum()), self.f_total_signed)]
        for column in balances:
            totals += [(float(by_tier[column].sum()) / 10000, self.f_total_num2), (1.0, self.f_total_pct)]
        for col, (value, style) in enumerate(totals):
            sheet.write(row, col, value, style)
        sheet.set_column(0, 0, 16)
        sheet.set_column(1, max(len(heads), len(report.tiers) + 3 + len(balances)) - 1, 13)

        # charts: this quarter (and last) per tier; share pie; balances per tier
        chart_row = row + 2
        names = f"='{SHEETS[0]}'!$A${first + 1}:$A${last + 1}"
        column_chart = self.book.add_chart({"type": "column"})
        column_chart.add_series({"name": "本季户数", "categories": names,
                                 "values": [SHEETS[0], first, 1, last, 1], "fill": {"color": "#2E75B6"},
                                 "data_labels": {"value": True}})
        if has_prev:
            column_chart.add_series({"name": "上季户数", "categories": names,
                                     "values": [SHEETS[0], first, 3, last, 3], "fill": {"color": "#A5A5A5"},
                                     "data_labels": {"value": True}})
        column_chart.set_title({"name": "各等级户数" + ("(本季 vs 上季)" if has_prev else ""),
                                "name_font": {"size": 11, "bold": True}})
        column_chart.set_legend({"position": "bottom"})
        column_chart.set_y_axis({"major_gridlines": {"visible": True, "line": {"color": "#E0E0E0"}}})
        column_chart.set_size({"width": 520, "height": 300})
        sheet.insert_chart(chart_row, 0, column_chart)
        pie = self.book.add_chart({"type": "pie"})
        many = last - first + 1 > 5
        pie.add_series({"name": "本季等级分布", "categories": names, "values": [SHEETS[0], first, 1, last, 1],
                        "data_labels": {"percentage": True, "category": not many, "separator": " ",
                                        "position": "outside_end", "leader_lines": True},
                        "points": [{"fill": {"color": self.colours[t]}} for t in report.tiers]})
        pie.set_title({"name": "本季等级占比", "name_font": {"size": 11, "bold": True}})
        pie.set_legend({"position": "right"})
        pie.set_size({"width": 420, "height": 300})
        sheet.insert_chart(chart_row, 6 if len(heads) <= 6 else 5, pie, {"x_offset": 20})
        row = chart_row + 16
        if balances:
            bal_chart = self.book.add_chart({"type": "column"})
            for index, column in enumerate(balances):
                col = len(heads) - 2 * len(balances) + 2 * index
                bal_chart.add_series({"name": f"{column[4:]}(万元)", "categories": names,
                                      "values": [SHEETS[0], first, col, last, col],
                                      "fill": {"color": _COLOURS[(index + 2) % len(_COLOURS)]}})
            bal_chart.set_title({"name": "各等级余额(万元)", "name_font": {"size": 11, "bold": True}})
            bal_chart.set_legend({"position": "bottom"})
            bal_chart.set_y_axis({"num_format": "#,##0", "major_gridlines": {"visible": True,
                                                                          "line": {"color": "#E0E0E0"}}})
            bal_chart.set_size({"width": 520, "height": 300})
            sheet.insert_chart(chart_row + 16, 0, bal_chart)
            row = chart_row + 32

        # per group
        if report.by_group is not None:
            group = report.by_group
            group_name = str(report.current.columns.group)
            sheet.set_h_pagebreaks([row - 1])
            sheet.write(row, 0, f"二、按{group_name}分布", self.f_section)
            row += 1
            sheet.set_row(row, 30)
            heads_g = [group_name, *report.tiers, TOTAL, "占全部"] + [f"{c[4:]}(万元)" for c in balances]
            sheet.write_row(row, 0, heads_g, self.f_head)
            g_first = row + 1
            for name, line in group.iterrows():
                row += 1
                sheet.write(row, 0, str(name), self.f_label)
                for col, tier in enumerate(report.tiers, start=1):
                    sheet.write(row, col, int(line[tier]), self.f_int)
                sheet.write(row, len(report.tiers) + 1, int(line["total"]), self.f_total_int)
                sheet.write(row, len(report.tiers) + 2, float(line["share"]), self.f_pct)
                for index, column in enumerate(balances):
                    sheet.write(row, len(report.tiers) + 3 + index, float(line[column]) / 10000, self.f_num2)
            g_last = row
            row += 1
            sheet.write(row, 0, TOTAL, self.f_total_label)
            for col, tier in enumerate(report.tiers, start=1):
                sheet.write(row, col, int(group[tier].sum()), self.f_total_int)
            sheet.write(row, len(report.tiers) + 1, int(group["total"].sum()), self.f_total_int)
            sheet.write(row, len(report.tiers) + 2, float(group["share"].sum()), self.f_total_pct)
            for index, column in enumerate(balances):
                sheet.write(row, len(report.tiers) + 3 + index, float(group[column].sum()) / 10000,
                            self.f_total_num2)
            sheet.conditional_format(g_first, 1, g_last, len(report.tiers), {
                "type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#9BC2E6"})
            stacked = self.book.add_chart({"type": "column", "subtype": "stacked"})
            for index, tier in enumerate(report.tiers):
                stacked.add_series({"name": [SHEETS[0], g_first - 1, index + 1],
                                    "categories": [SHEETS[0], g_first, 0, g_last, 0],
                                    "values": [SHEETS[0], g_first, index + 1, g_last, index + 1],
                                    "fill": {"color": self.colours[tier]}, "gap": 60})
            stacked.set_title({"name": f"按{group_name}的等级构成", "name_font": {"size": 11, "bold": True}})
            stacked.set_legend({"position": "bottom"})
            stacked.set_size({"width": 960, "height": 320})
            sheet.insert_chart(row + 2, 0, stacked)
        self._page(sheet, repeat=(0, 1), freeze=(header_row + 1, 1))
        sheet.activate()

    # ------------------------------------------------------------------ 2. 迁移矩阵
    def _migration(self) -> None:
        report = self.report
        sheet = self.book.add_worksheet(SHEETS[1])
        migration = report.migration
        tiers = list(report.tiers)
        width = len(tiers) + 3
        if migration is None:
            self._heading(sheet, "迁移矩阵", "未提供上季数据 — 无法计算迁移 / no previous quarter given", max(width, 8))
            sheet.set_column(0, 0, 40)
            self._page(sheet, repeat=(0, 1), freeze=None)
            return
        before = f"{report.previous_as_of:%Y-%m-%d}" if report.previous_as_of else "上季"
        self._heading(sheet, f"等级迁移矩阵  上季({before}) → 本季({report.as_of:%Y-%m-%d})",
                      f"行 = 上季等级,列 = 本季等级;等级自左向右由好到差:对角线为不变,对角线右侧为下调(变差)、"
                      f"左侧为上调(变好);按 {report.current.columns.key or '行号'} 匹配", max(width, 10))
        matrix = migration.matrix
        row = 3
        sheet.write(row - 1, 0, "一、迁移户数", self.f_section)
        sheet.write_row(row, 0, [MATRIX_CORNER, *tiers, EXITED, TOTAL], self.f_head)
        header_row = row
        first = row + 1
        for prev_tier in [*tiers, NEW, TOTAL]:
            row += 1
            is_total = prev_tier == TOTAL
            sheet.write(row, 0, prev_tier, self.f_total_label if is_total else self.f_label)
            for col, cur_tier in enumerate([*tiers, EXITED, TOTAL], start=1):
                value = int(matrix.loc[prev_tier, cur_tier])
                if is_total or cur_tier == TOTAL:
                    style = self.f_total_int
                elif prev_tier == cur_tier:
                    style = self.f_diag
                else:
                    style = self.f_int
                sheet.write(row, col, value, style)
        n = len(tiers)
        # heat map: downgrades red, upgrades green, unchanged blue (cells of comparable tiers only)
        ranked = [t for t in tiers if t in report.order]
        k = len(ranked)
        up_cells, down_cells, same_cells = [], [], []
        for i in range(k):
            for j in range(k):
                cell = _cell(first + i, 1 + j)
                (same_cells if i == j else down_cells if j > i else up_cells).append(cell)
        for cells, colour in ((down_cells, "#F8696B"), (up_cells, "#63BE7B"), (same_cells, "#5B9BD5")):
            if cells:
                sheet.conditional_format(first, 1, first + k - 1, k, {
                    "type": "2_color_scale", "min_color": "#FFFFFF", "max_color": colour,
                    "multi_range": " ".join(cells)})
        sheet.conditional_format(first + n, 1, first + n, n, {"type": "2_color_scale", "min_color": "#FFFFFF",
                                                               "max_color": "#FFD966"})
        sheet.conditional_format(first, n + 1, first + n - 1, n + 1, {"type": "2_color_scale",
                                                                      "min_color": "#FFFFFF",
                                                                      "max_color": "#BFBFBF"})
        row += 2
        # row percentages: where did each previous tier go?
        sheet.write(row, 0, "二、迁移率(占上季该等级户数)", self.f_section)
        row += 1
        sheet.write_row(row, 0, [MATRIX_CORNER, *tiers, EXITED], self.f_head)
        pct_first = row + 1
        for prev_tier in tiers:
            row += 1
            total = int(matrix.loc[prev_tier, TOTAL])
            sheet.write(row, 0, prev_tier, self.f_label)
            for col, cur_tier in enumerate([*tiers, EXITED], start=1):
                value = matrix.loc[prev_tier, cur_tier] / total if total else 0.0
                sheet.write(row, col, float(value), self.f_pct)
        if tiers:
            sheet.conditional_format(pct_first, 1, row, n + 1, {"type": "2_color_scale", "min_color": "#FFFFFF",
                                                                 "max_color": "#F4B183"})
        row += 2
        # figures
        sheet.write(row, 0, "三、升降级统计", self.f_section)
        row += 1
        sheet.write_row(row, 0, ["指标", "户数", "比率"], self.f_head)
        sheet.merge_range(row, 3, row, 5, "口径", self.f_head)
        stats_first = row + 1
        figures = [
            ("两季均有(可比)", migration.comparable, 1.0 if migration.comparable else 0.0, "两季都在且等级可比的户数"),
            ("上调", migration.upgraded, migration.upgrade_rate, "÷ 可比户数"),
            ("不变", migration.unchanged, migration.unchanged_rate, "÷ 可比户数"),
            ("下调", migration.downgraded, migration.downgrade_rate, "÷ 可比户数"),
            ("新增", migration.new, migration.new / migration.current_total if migration.current_total else 0.0,
             "÷ 本季户数"),
            ("退出", migration.exited, migration.exited / migration.previous_total if migration.previous_total
             else 0.0, "÷ 上季户数"),
            (f"无法比较(含{PENDING})", migration.incomparable,
             migration.incomparable / migration.matched if migration.matched else 0.0, "÷ 两季均有户数"),
        ]
        for label, count, rate, basis in figures:
            row += 1
            style = {"上调": self.f_good, "下调": self.f_bad}.get(label, self.f_label)
            sheet.write(row, 0, label, style)
            sheet.write(row, 1, int(count), self.f_int)
            sheet.write(row, 2, float(rate), self.f_pct)
            sheet.merge_range(row, 3, row, 5, basis, self.f_text)
        # chart: what happened to each previous tier
        fate_row = row + 2
        sheet.write(fate_row, 0, "四、上季各等级去向", self.f_section)
        fate_head = fate_row + 1
        sheet.write_row(fate_head, 0, ["上季等级", "上调", "不变", "下调", EXITED, "其他"], self.f_head)
        rank = {t: i for i, t in enumerate(report.order)}
        fr = fate_head
        for prev_tier in tiers:
            fr += 1
            counts = [0, 0, 0, int(matrix.loc[prev_tier, EXITED]), 0]
            for cur_tier in tiers:
                value = int(matrix.loc[prev_tier, cur_tier])
                if prev_tier in rank and cur_tier in rank:
                    index = 0 if rank[cur_tier] < rank[prev_tier] else 1 if rank[cur_tier] == rank[prev_tier] else 2
                else:
                    index = 4
                counts[index] += value
            sheet.write(fr, 0, prev_tier, self.f_label)
            sheet.write_row(fr, 1, counts, self.f_int)
        fate = self.book.add_chart({"type": "bar", "subtype": "stacked"})
        for index, (colour, col) in enumerate((("#63BE7B", 1), ("#9DC3E6", 2), ("#F8696B", 3), ("#A5A5A5", 4),
                                               ("#FFD966", 5))):
            fate.add_series({"name": [SHEETS[1], fate_head, col], "categories": [SHEETS[1], fate_head + 1, 0, fr, 0],
                             "values": [SHEETS[1], fate_head + 1, col, fr, col], "fill": {"color": colour},
                             "gap": 50})
        fate.set_title({"name": "上季各等级本季去向(户数)", "name_font": {"size": 11, "bold": True}})
        fate.set_y_axis({"reverse": True})
        fate.set_legend({"position": "bottom"})
        fate.set_size({"width": 560, "height": 60 + 34 * max(len(tiers), 3)})
        sheet.insert_chart(stats_first - 1, 6 if width <= 8 else min(width, 9), fate)
        sheet.set_column(0, 0, 16)
        sheet.set_column(1, n + 2, 11)
        sheet.set_column(3, 3, max(11, 18 if n < 3 else 11))
        self._page(sheet, repeat=(0, 1), freeze=(header_row + 1, 1))

    # ------------------------------------------------------------------ 2b. 下调明细
    def _downgrades(self) -> None:
        """The downgraded rows with why: on their own sheet so the long reasons get wide columns."""
        report = self.report
        migration = report.migration
        sheet = self.book.add_worksheet(SHEETS[2])
        heads = ["序号", "匹配键", "名称", "分组", "负责人", "上季等级", "本季等级", "下调级数", "决定等级的规则(本季)",
                 "依据数值(本季)", "推导链(本季触发的其他规则)", "上季决定规则"]
        widths = [6, 14, 22, 10, 9, 9, 9, 8, 32, 40, 40, 30]
        if migration is None:
            self._heading(sheet, "下调明细", "未提供上季数据 / no previous quarter given", len(heads))
            self._page(sheet, repeat=(0, 1), freeze=None)
            return
        self._heading(sheet, f"下调明细({migration.downgraded} 户,按下调级数从多到少)",
                      "原因取自本季评估的触发规则(fired_rules):决定等级的规则及其条件(参数已代入)、条件所用的数值,"
                      "以及得出该等级所经过的其他规则", len(heads))
        header = 3
        sheet.write_row(header, 0, heads, self.f_head)
        for col, width in enumerate(widths):
            sheet.set_column(col, col, width)
        row = header
        for index, line in migration.downgraded_rows.head(MAX_LISTED).iterrows():
            row += 1
            values = [index + 1, line["key"], line["name"], line["group"], line["owner"], line["prev_tier"],
                      line["tier"], int(line["steps"]), line.get("rule", ""), line.get("evidence", ""),
                      line.get("reason", ""), line.get("prev_rule", "")]
            for col, value in enumerate(values):
                if col in (0, 7):
                    sheet.write_number(row, col, value, self.f_top_center)
                elif col == 6:
                    sheet.write_string(row, col, str(value), self.f_top_bad)
                else:
                    sheet.write_string(row, col, str(value), self.f_wrap)
            # a CJK character is ~1.6 width units in the report font, ASCII ~0.9: estimate the wrapped lines
            lines = max(_text_width(str(values[col])) / (widths[col] * 1.25) for col in (2, 8, 9, 10, 11))
            sheet.set_row(row, 14 * max(1, math.ceil(lines)))
        if migration.downgraded == 0:
            row += 1
            sheet.merge_range(row, 0, row, len(heads) - 1, "本季无下调 / no downgrades", self.f_text)
        else:
            sheet.autofilter(header, 0, row, len(heads) - 1)
        self._page(sheet, repeat=(header, header), freeze=(header + 1, 2))

    # ------------------------------------------------------------------ 3. 回访计划表
    def _calendar(self) -> None:
        report = self.report
        sheet = self.book.add_worksheet(SHEETS[3])
        rows = report.calendar
        cur = report.current.rows
        has = {name: (cur[name] != "").any() for name in ("name", "group", "owner", "visit_type", "frequency",
                                                          "channel", "support_roles")}
        spec: list[tuple[str, str, float]] = [("seq", "序号", 6), ("key", "匹配键", 16)]
        spec += [(n, h, w) for n, h, w in (("name", "名称", 26), ("group", "分组", 12), ("owner", "负责人", 10))
                 if has[n]]
        spec += [("tier", "等级", 10), ("next_date", "下次回访日期", 13), ("visit_status", "回访状态", 9)]
        spec += [(n, h, w) for n, h, w in (("visit_type", "回访类型", 10), ("frequency", "回访频率", 9),
                                            ("channel", "联系渠道", 11)) if has[n]]
        spec += [("owner_role", "主责角色", 13)]
        spec += [("support_roles", "协同人", 20)] if has["support_roles"] else []
        spec += [("plan_due", "计划报送截止", 13), ("bucket", "时段", 18), ("done", "实际回访日期", 13),
                 ("remark", "回访记录/备注", 24)]
        if report.options.calendar_by == "month":
            spec = [s if s[0] != "bucket" else ("bucket", "月份", 12) for s in spec]
        width = len(spec)
        overdue = int((rows["bucket"] == OVERDUE_LABEL).sum())
        window = f"{report.window_start:%Y-%m-%d} 至 {report.window_end:%Y-%m-%d}"
        self._heading(sheet, f"{self._title()} — 下季回访计划表({window})",
                      f"计划报送截止日 {report.plan_due:%Y-%m-%d};共 {int((rows['status'] == 'OK').sum())} 户需回访,"
                      f"其中逾期 {overdue} 户(置顶);下季之后才到期 {report.later} 户未列入;"
                      f"按{'周' if report.options.calendar_by == 'week' else '月'}分组", width)
        header = 3
        sheet.write_row(header, 0, [h for _n, h, _w in spec], self.f_head)
        for col, (_n, _h, w) in enumerate(spec):
            sheet.set_column(col, col, w)
        row = header
        current_bucket = None
        date_cols = {"next_date", "plan_due"}
        bucket_sizes = rows["bucket"].value_counts()
        for seq, line in enumerate(rows.head(MAX_LISTED).to_dict("records"), start=1):
            if line["bucket"] != current_bucket:
                current_bucket = line["bucket"]
                row += 1
                count = int(bucket_sizes[current_bucket])
                style = self.f_overdue_group if current_bucket == OVERDUE_LABEL else self.f_group
                sheet.merge_range(row, 0, row, width - 1, f"{current_bucket}  ({count} 户)", style)
            row += 1
            is_overdue = line["bucket"] == OVERDUE_LABEL
            for col, (name, _h, _w) in enumerate(spec):
                if name == "seq":
                    sheet.write_number(row, col, seq, self.f_center)
                elif name in date_cols:
                    value = line[name]
                    if pd.isna(value):
                        sheet.write_blank(row, col, None, self.f_date)
                    else:
                        sheet.write_datetime(row, col, pd.Timestamp(value).to_pydatetime(), self.f_date)
                elif name == "visit_status":
                    text = line[name] if line["status"] == "OK" else line["errors"]
                    style = self.f_bad if is_overdue else self.f_warn if line["status"] != "OK" else self.f_center
                    sheet.write_string(row, col, str(text), style)
                elif name in ("done", "remark"):
                    sheet.write_blank(row, col, None, self.f_text)
                else:
                    sheet.write_string(row, col, str(line[name]), self.f_text)
        if rows.empty:
            sheet.merge_range(header + 1, 0, header + 1, width - 1, "下季无到期回访 / nothing due", self.f_text)
        self._page(sheet, repeat=(header, header), freeze=(header + 1, 2))
        sheet.autofilter(header, 0, max(row, header + 1), width - 1)

    # ------------------------------------------------------------------ 4. 工作量
    def _workload(self) -> None:
        report = self.report
        sheet = self.book.add_worksheet(SHEETS[4])
        name = sheet.get_name()
        capacity = report.options.capacity_days
        key = next((o for o in report.compiled.definition.outputs if _BUDGET_KEY.match(o.key)), None)
        unit = {"days_per_month": "天/月", "days_per_year": "天/年 ÷ 12",
                "hours_per_month": f"小时/月 ÷ {_num(report.options.hours_per_day)}"}
        basis = unit.get(key.key.replace("time_budget_", ""), key.key) if key else "规则集无时间预算"
        tiers = list(report.order)
        owner_width = 7 + len(tiers)
        self._heading(sheet, f"{self._title()} — 工作量与产能",
                      f"时间预算取自规则集({key.key if key else ''}:{basis}),折算为每月工作日;每人产能 "
                      f"{_num(capacity)} 个工作日/月;利用率 > 100% 为超负荷", max(owner_width, 8))
        row = 3
        sheet.write(row - 1, 0, "一、按主责角色", self.f_section)
        heads = ["主责角色", "客户数", "月度需求(天)", "所需人数", "配置人数", "月度产能(天)", "利用率", "状态"]
        sheet.write_row(row, 0, heads, self.f_head)
        header_row = row
        first = row + 1
        by_role = report.by_role
        for role, line in by_role.iterrows():
            row += 1
            sheet.write(row, 0, str(role), self.f_label)
            sheet.write(row, 1, int(line["accounts"]), self.f_int)
            sheet.write(row, 2, float(line["days"]), self.f_num2)
            sheet.write(row, 3, float(line["fte"]), self.f_num2)
            if pd.isna(line["capacity"]):
                sheet.write_string(row, 4, "未提供", self.f_center)
                sheet.write_string(row, 5, "—", self.f_center)
                sheet.write_string(row, 6, "—", self.f_center)
            else:
                sheet.write(row, 4, int(line["staff"]), self.f_int)
                sheet.write(row, 5, float(line["capacity"]), self.f_num2)
                sheet.write(row, 6, float(line["utilisation"]), self.f_pct)
            sheet.write_string(row, 7, str(line["flag"]), self._flag_format(str(line["flag"])))
        last = row
        row += 1
        sheet.write(row, 0, TOTAL, self.f_total_label)
        sheet.write(row, 1, int(by_role["accounts"].sum()), self.f_total_int)
        sheet.write(row, 2, float(by_role["days"].sum()), self.f_total_num2)
        sheet.write(row, 3, float(by_role["fte"].sum()), self.f_total_num2)
        for col in range(4, 8):
            sheet.write_blank(row, col, None, self.f_total_label)
        notes = []
        if by_role["capacity"].isna().any():
            notes.append("未提供配置人数的角色只给出所需人数(月度需求 ÷ 每人产能);用 --staff 角色=人数 给出人数后判断超负荷。")
        if report.current.columns.support_roles:
            notes.append("协同人(support_roles)的时间未单独预算,只计入主责角色。")
        for text in notes:
            row += 1
            sheet.merge_range(row, 0, row, 7, "注:" + text, self.f_note)
        sheet.set_column(0, 0, 16)
        sheet.set_column(1, max(owner_width, 8), 11)
        sheet.set_column(1, 1, 14)

        # charts side by side: demand per role; visits per calendar bucket (data table at the end)
        charts_row = row + 2
        buckets = report.by_bucket
        owner_rows = len(report.by_owner) if report.by_owner is not None else 0
        bucket_head = charts_row + 17 + (owner_rows + 22 if report.by_owner is not None else 0)
        if len(by_role):
            role_chart = self.book.add_chart({"type": "column"})
            role_chart.add_series({"name": "月度需求(天)", "categories": [name, first, 0, last, 0],
                                   "values": [name, first, 2, last, 2], "fill": {"color": "#2E75B6"},
                                   "data_labels": {"value": True, "num_format": "0.0"}})
            if by_role["capacity"].notna().any():
                role_chart.add_series({"name": "月度产能(天)", "categories": [name, first, 0, last, 0],
                                       "values": [name, first, 5, last, 5], "fill": {"color": "#A9D18E"}})
            role_chart.set_title({"name": "各角色月度工作量(工作日)", "name_font": {"size": 11, "bold": True}})
            role_chart.set_legend({"position": "bottom"})
            role_chart.set_size({"width": 470, "height": 300})
            sheet.insert_chart(charts_row, 0, role_chart)
        if len(buckets):
            visits = self.book.add_chart({"type": "column"})
            points = [{"fill": {"color": "#C00000" if b == OVERDUE_LABEL else "#ED7D31" if b == DUE_NOW_LABEL
                                else "#A5A5A5" if b.startswith(PENDING) else "#5B9BD5"}}
                      for b in buckets["bucket"].astype(str)]
            visits.add_series({"name": "回访户数", "categories": [name, bucket_head + 1, 0, bucket_head + len(buckets), 0],
                               "values": [name, bucket_head + 1, 1, bucket_head + len(buckets), 1],
                               "points": points, "data_labels": {"value": True}, "gap": 40})
            visits.set_title({"name": "下季回访量(按时段,红 = 逾期)", "name_font": {"size": 11, "bold": True}})
            visits.set_legend({"none": True})
            visits.set_x_axis({"num_font": {"rotation": -45, "size": 7}, "interval_unit": 1})
            visits.set_size({"width": 490, "height": 300})
            sheet.insert_chart(charts_row, 0, visits, {"x_offset": 480})
        row = charts_row + 17
        breaks = []
        if report.by_owner is not None:
            breaks.append(row)
            owner_name = str(report.current.columns.owner)
            sheet.write(row, 0, f"二、按{owner_name}(每人产能 {_num(capacity)} 天/月)", self.f_section)
            row += 1
            heads_o = [owner_name, "角色", "客户数", *tiers, "月度需求(天)", "产能(天)", "利用率", "状态"]
            sheet.write_row(row, 0, heads_o, self.f_head)
            o_first = row + 1
            base = 3 + len(tiers)
            for owner, line in report.by_owner.iterrows():
                row += 1
                sheet.write(row, 0, str(owner), self.f_label)
                sheet.write(row, 1, str(line["roles"]), self.f_text)
                sheet.write(row, 2, int(line["accounts"]), self.f_int)
                for col, tier in enumerate(tiers, start=3):
                    sheet.write(row, col, int(line[f"tier:{tier}"]), self.f_int)
                sheet.write(row, base, float(line["days"]), self.f_num2)
                sheet.write(row, base + 1, float(line["capacity"]), self.f_num2)
                sheet.write(row, base + 2, float(line["utilisation"]), self.f_pct)
                sheet.write(row, base + 3, str(line["flag"]), self._flag_format(str(line["flag"])))
            o_last = row
            sheet.conditional_format(o_first, base + 2, o_last, base + 2, {
                "type": "data_bar", "data_bar_2010": False, "bar_color": "#F4B183", "min_type": "num", "min_value": 0, "max_type": "num",
                "max_value": 1.5})
            owner_chart = self.book.add_chart({"type": "column"})
            owner_chart.add_series({"name": "月度需求(天)", "categories": [name, o_first, 0, o_last, 0],
                                    "values": [name, o_first, base, o_last, base], "fill": {"color": "#5B9BD5"},
                                    "points": [{"fill": {"color": "#C00000" if f == "超负荷" else "#5B9BD5"}}
                                               for f in report.by_owner["flag"]],
                                    "data_labels": {"value": True, "num_format": "0.0", "font": {"size": 7}}})
            line_chart = self.book.add_chart({"type": "line"})
            line_chart.add_series({"name": "产能(天)", "categories": [name, o_first, 0, o_last, 0],
                                   "values": [name, o_first, base + 1, o_last, base + 1],
                                   "line": {"color": "#C00000", "dash_type": "dash", "width": 2},
                                   "marker": {"type": "none"}})
            owner_chart.combine(line_chart)
            owner_chart.set_title({"name": f"各{owner_name}月度工作量 vs 产能(红 = 超负荷)",
                                   "name_font": {"size": 11, "bold": True}})
            owner_chart.set_legend({"position": "bottom"})
            owner_chart.set_x_axis({"num_font": {"rotation": -45, "size": 8}, "interval_unit": 1})
            owner_chart.set_size({"width": 970, "height": 300})
            sheet.insert_chart(row + 2, 0, owner_chart)
        row = bucket_head - 1
        if len(buckets):
            breaks.append(row)
            sheet.write(row, 0, "三、下季回访量按时段", self.f_section)
            sheet.write_row(bucket_head, 0, ["时段", "回访户数"], self.f_head)
            for index, line in buckets.iterrows():
                style = self.f_bad if line["bucket"] == OVERDUE_LABEL else self.f_text
                sheet.write_string(bucket_head + 1 + index, 0, str(line["bucket"]), style)
                sheet.write_number(bucket_head + 1 + index, 1, int(line["visits"]), self.f_int)
            sheet.write(bucket_head + 1 + len(buckets), 0, TOTAL, self.f_total_label)
            sheet.write(bucket_head + 1 + len(buckets), 1, int(buckets["visits"].sum()), self.f_total_int)
            sheet.set_column(0, 0, 26)
        sheet.set_h_pagebreaks(breaks)
        self._page(sheet, repeat=(0, 1), freeze=(header_row + 1, 1))

    def _flag_format(self, flag: str) -> Any:
        if flag == "超负荷":
            return self.f_bad
        if flag == "接近满负荷" or flag.startswith("需"):
            return self.f_warn
        if flag == "正常":
            return self.f_good
        return self.f_center

    # ------------------------------------------------------------------ 5. 说明
    def _notes(self) -> None:
        report = self.report
        sheet = self.book.add_worksheet(SHEETS[5])
        compiled = report.compiled
        columns = report.current.columns
        self._heading(sheet, "报告说明", "本报告由 tierbook 生成;每个数字都可追溯到下列规则集、参数与数据列", 2)
        items: list[tuple[str, str]] = [
            ("规则集", f"{compiled.id} — {self._title()}"),
            ("版本 / 摘要", f"{compiled.version} / {compiled.digest[:16]}"),
            ("来源", compiled.definition.source),
            ("本季基准日", f"{report.as_of:%Y-%m-%d}"),
            ("上季基准日", f"{report.previous_as_of:%Y-%m-%d}" if report.previous_as_of else "未提供上季数据"),
            ("回访计划区间", f"{report.window_start:%Y-%m-%d} 至 {report.window_end:%Y-%m-%d}(基准日后至下季末)"),
            ("计划报送截止日", f"{report.plan_due:%Y-%m-%d}"),
            ("等级列", f"{compiled.definition.tier_output}(表头 {columns.tier})"),
            ("等级顺序(好 → 差)", " > ".join(report.order) + ("(手工指定)" if report.options.tier_order else
                                                          "(由规则集推断)")),
            ("匹配键", str(columns.key or "无(按行号)")),
            ("分组列", str(columns.group or "无") + ("" if report.options.group_by or not columns.group else "(自动识别)")),
            ("负责人列", str(columns.owner or "无") + ("" if report.options.owner or not columns.owner else "(自动识别)")),
            ("余额列", "、".join(f"{label}(表头 {header})" for label, header in columns.balances) or "无"),
            ("本季数据", f"{len(report.current.rows)} 行;" + ("已在本报告中按规则集评估" if report.current.evaluated_here
                                                       else "使用表中已有的分级结果")),
            ("上季数据", "未提供" if report.previous is None else f"{len(report.previous.rows)} 行;"
             + ("已在本报告中按规则集评估" if report.previous.evaluated_here else "使用表中已有的分级结果")),
            ("产能", f"每人每月 {_num(report.options.capacity_days)} 个工作日;每日 {_num(report.options.hours_per_day)} 小时"),
            ("配置人数", "、".join(f"{k} {v} 人" for k, v in report.options.staff.items()) or "未提供"),
        ]
        changed = ", ".join(f"{k}={render_param(v)}" for k, v in compiled.overridden.items())
        items.append(("修改过的参数", changed or "无(全部为默认值)"))
        row = 3
        sheet.write_row(row, 0, ["项目", "内容"], self.f_head)
        for label, value in items:
            row += 1
            sheet.write_string(row, 0, label, self.f_label)
            sheet.write_string(row, 1, value, self.f_wrap)
            sheet.set_row(row, 15 * max(1, math.ceil(_text_width(value) / 98)))
        row += 2
        sheet.write(row, 0, "数据提示", self.f_section)
        for warning in report.warnings or ("无",):
            row += 1
            sheet.write_string(row, 0, "•", self.f_note)
            sheet.write_string(row, 1, warning, self.f_note)
        row += 2
        sheet.write(row, 0, "参数", self.f_section)
        row += 1
        sheet.write_row(row, 0, ["参数", "取值 / 说明"], self.f_head)
        for param in compiled.definition.parameters:
            row += 1
            sheet.write_string(row, 0, param.key, self.f_text)
            sheet.write_string(row, 1, f"{render_param(compiled.params[param.key])}  {param.zh or param.en}",
                               self.f_wrap)
        sheet.set_column(0, 0, 34)
        sheet.set_column(1, 1, 100)
        self._page(sheet, repeat=(0, 1), freeze=None)


def _text_width(text: str) -> int:
    """Display width in character cells: CJK characters take two (what a column width counts)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _tier_colours(tiers: Sequence[str], order: Sequence[str]) -> dict[str, str]:
    """Best tier green through amber to worst red; 待定 and unknown values grey."""
    stops = [(0x63, 0xBE, 0x7B), (0xFF, 0xC0, 0x00), (0xC0, 0x00, 0x00)]
    colours: dict[str, str] = {}
    for index, tier in enumerate(order):
        t = index / (len(order) - 1) if len(order) > 1 else 0.0
        half, frac = (0, t * 2) if t <= 0.5 else (1, t * 2 - 1)
        low, high = stops[half], stops[half + 1]
        colours[tier] = "#" + "".join(f"{round(a + (b - a) * frac):02X}" for a, b in zip(low, high))
    for tier in tiers:
        colours.setdefault(tier, "#A5A5A5")
    return colours


def _num(value: float) -> str:
    """20.0 → '20', 0.25 → '0.25': numbers in sentences as a person writes them."""
    return f"{value:g}"


def _cell(row: int, col: int) -> str:
    from xlsxwriter.utility import xl_rowcol_to_cell

    return xl_rowcol_to_cell(row, col)

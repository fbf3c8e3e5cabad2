"""`TIER_WHY`: the rules that fired for one row, in Chinese words, built from the ruleset itself.

Nothing here knows a particular ruleset. Each fired rule is rendered from its compiled
condition and assignments (the syntax trees of `engine.expr`, parameters already bound as
numbers), with every name replaced by its Chinese header and the row's value:

    风险分类 = 风险 (规则 GR-3b, 风险分类): 因为 主债务逾期天数 120 > 90
    下次回访日期 = 2024-06-30 (规则 GR-6-next, 下次回访日期): max(visit_due_date 2024-06-16, 分类基准日 2024-06-30)

The row is evaluated by the scalar reference engine (`engine.scalar`), which is what the vector
engine is proven equal to, so the words explain exactly the values TIER_TABLE shows.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

from engine import expr as ex
from engine import scalar
from engine.compile import CompiledRuleset, render_param
from engine.prepare import prepare_row

_OPS = {"=": "=", "!=": "≠", "<": "<", "<=": "≤", ">": ">", ">=": "≥"}
_FUNCTIONS = {
    "next_quarter_start": "下季度首日", "quarter_start": "本季度首日", "quarter": "季度", "year": "年份",
    "month": "月份", "day": "日", "abs": "绝对值", "round": "四舍五入", "concat": "连接",
}


def labels(compiled: CompiledRuleset) -> dict[str, str]:
    """fact/input key → its Chinese header (inputs, then outputs); other facts keep their key."""
    names: dict[str, str] = {}
    for inp in compiled.definition.inputs:
        names[inp.key] = inp.zh or inp.en or inp.key
    for out in compiled.definition.outputs:
        names.setdefault(out.key, out.zh or out.en or out.key)
    return names


def value_text(value: object) -> str:
    """A scalar-model value as an analyst reads it: 120, 0.7, 2024-06-30, 是/否, 空."""
    if value is None:
        return "空"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, Decimal):
        return render_param(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()[:10]
    return str(value)


def row_values(compiled: CompiledRuleset, raw: Mapping[str, object]) -> dict[str, object]:
    """Typed input values of one raw row (invalid cells count as blank)."""
    return dict(prepare_row(compiled, raw).values)


class _Words:
    """Renders one syntax tree as Chinese text with names shown as `header value`."""

    def __init__(self, names: Mapping[str, str], values: Mapping[str, object] | None) -> None:
        self.names = names
        self.values = values or {}
        self.show_values = values is not None

    def name(self, key: str) -> str:
        label = self.names.get(key, key)
        return f"{label} {value_text(self.values.get(key))}" if self.show_values else label

    def wrap(self, node: ex.Node, parent: int) -> str:
        text = self.text(node)
        return f"({text})" if _precedence(node) < parent else text

    def text(self, node: ex.Node) -> str:  # noqa: PLR0911, PLR0912 — one branch per node type
        if isinstance(node, ex.Literal):
            if isinstance(node.value, str):
                return f"“{node.value}”"
            return value_text(node.value)
        if isinstance(node, ex.Name):
            return self.name(node.name)
        if isinstance(node, ex.Neg):
            return "-" + self.wrap(node.operand, 7)
        if isinstance(node, ex.Not):
            return "并非 " + self.wrap(node.operand, 4)
        if isinstance(node, ex.BinOp):
            prec = 5 if node.op in "+-" else 6
            op = {"*": "×", "/": "÷"}.get(node.op, node.op)
            return f"{self.wrap(node.left, prec)} {op} {self.wrap(node.right, prec + 1)}"
        if isinstance(node, ex.Compare):
            return self.compare(node)
        if isinstance(node, ex.InList):
            word = "不属于" if node.negated else "属于"
            return f"{self.wrap(node.item, 5)} {word} [{', '.join(self.text(o) for o in node.options)}]"
        if isinstance(node, ex.InRange):
            word = "不在" if node.negated else "在"
            opener = "[" if node.low_closed else "("
            closer = "]" if node.high_closed else ")"
            return f"{self.wrap(node.item, 5)} {word} {opener}{self.text(node.low)}, {self.text(node.high)}{closer} 内"
        if isinstance(node, ex.And):
            return " 且 ".join(self.wrap(i, 3) for i in node.items)
        if isinstance(node, ex.Or):
            return " 或 ".join(self.wrap(i, 2) for i in node.items)
        if isinstance(node, ex.Call):
            return self.call(node)
        return ex.to_text(node)

    def compare(self, node: ex.Compare) -> str:
        left, right, op = node.left, node.right, node.op
        if isinstance(left, ex.Name) and isinstance(right, ex.Literal) and op in ("=", "!="):
            value = self.values.get(left.name)
            label = self.names.get(left.name, left.name)
            if isinstance(right.value, bool):  # `compensated = true` → 是否已代偿 为 是
                holds = (value is right.value) == (op == "=") or not self.show_values
                return f"{label} {'为' if holds else '不为'} {value_text(right.value)}"
            if isinstance(right.value, str) and ((value == right.value) == (op == "=") or not self.show_values):
                return f"{label} {_OPS[op]} {right.value}"  # `risk_class = '风险'` → 风险分类 = 风险
        return f"{self.wrap(left, 5)} {_OPS[op]} {self.wrap(right, 5)}"

    def offset(self, base: ex.Node, amount: ex.Node, unit: str) -> str:
        """`add_days(d, n)` → `d + n 天`; a negative literal reads as `d - 1 个月`."""
        if isinstance(amount, ex.Literal) and isinstance(amount.value, Decimal) and amount.value < 0:
            return f"{self.wrap(base, 5)} - {value_text(-amount.value)} {unit}"
        if isinstance(amount, ex.Neg):
            return f"{self.wrap(base, 5)} - {self.wrap(amount.operand, 6)} {unit}"
        return f"{self.wrap(base, 5)} + {self.wrap(amount, 6)} {unit}"

    def call(self, node: ex.Call) -> str:
        args = node.args
        func = node.func
        if func == "add_days" and len(args) == 2:
            return self.offset(args[0], args[1], "天")
        if func == "add_months" and len(args) == 2:
            return self.offset(args[0], args[1], "个月")
        if func == "days_between" and len(args) == 2:
            return f"{self.text(args[0])} 至 {self.text(args[1])} 的天数"
        if func == "is_blank" and len(args) == 1:
            return f"{self.text(args[0])} 为空"
        if func == "present" and len(args) == 1:
            return f"{self.text(args[0])} 已填写"
        if func == "if" and len(args) == 3:
            return f"若 {self.text(args[0])} 则 {self.text(args[1])} 否则 {self.text(args[2])}"
        shown = _FUNCTIONS.get(func, func)
        return f"{shown}({', '.join(self.text(a) for a in args)})"


def _precedence(node: ex.Node) -> int:
    if isinstance(node, ex.Or):
        return 1
    if isinstance(node, ex.And):
        return 2
    if isinstance(node, ex.Not):
        return 3
    if isinstance(node, (ex.Compare, ex.InList, ex.InRange)):
        return 4
    if isinstance(node, ex.BinOp):
        return 5 if node.op in "+-" else 6
    if isinstance(node, ex.Call) and node.func in ("add_days", "add_months"):
        return 5
    if isinstance(node, ex.Call) and node.func in ("if", "is_blank", "present", "days_between"):
        return 3
    return 8


def condition_words(compiled: CompiledRuleset, node: ex.Node | None, values: Mapping[str, object] | None) -> str:
    """One condition or expression in words; names shown with the row's values unless `values` is None."""
    if node is None:
        return "其余情况"
    return _Words(labels(compiled), values).text(node)


def explain_row(compiled: CompiledRuleset, raw: Mapping[str, object], error_text: str = "") -> str:
    """Why a row got its outputs: one line per fired rule, in decision order, then the notes.

    The first line names the result (the tier column), the ruleset id and version, and the
    parameters that differ from the file's defaults, so a screenshot of the cell is an audit trail.
    """
    definition = compiled.definition
    names = labels(compiled)
    tier = definition.tier_output
    changed = ", ".join(f"{k}={render_param(v)}" for k, v in compiled.overridden.items()) or "默认值"
    title = definition.title.zh or definition.title.en
    header = f"规则集 {definition.id} {definition.version} ({title}), 参数: {changed}"
    prepared = prepare_row(compiled, raw)
    if not prepared.ok:
        lead = f"{names.get(tier, tier)} = 待定: 此行数据有错误, 未执行规则"
        return "\n".join(line for line in (lead, error_text, header) if line)
    decision = scalar.decide_row(compiled, prepared.values)
    values: dict[str, object] = {**prepared.values, **decision.facts}
    words = _Words(names, values)
    by_id = {rule.id: (d, rule) for d in compiled.decisions for rule in d.rules}
    lines = [f"{names.get(tier, tier)} = {value_text(values.get(tier))}; {header}"]
    for rule_id in decision.fired:
        found = by_id.get(rule_id)
        if found is None:
            continue
        dec, rule = found
        title = next((d.title.zh or d.title.en for d in definition.decisions if d.id == dec.id), "") or dec.id
        results = []
        for key, node in rule.assignments:
            result = f"{names.get(key, key)} = {value_text(values.get(key))}"
            if not isinstance(node, ex.Literal):
                result += f" ({words.text(node)})"
            results.append(result)
        where = f"规则 {rule.id}, {title}"
        if dec.hit == "compute":
            lines.append(f"{'; '.join(results)} [{where}]")
        elif rule.condition is None:
            reason = "前面的规则都不满足" if dec.hit == "first" else "无条件"
            lines.append(f"{'; '.join(results)} [{where}]: {reason}")
        else:
            lines.append(f"{'; '.join(results)} [{where}]: 因为 {words.text(rule.condition)}")
    notes = [code for _pos, code in prepared.notes] + [code for _at, code in decision.notes]
    if notes:
        lines.append("备注: " + ";".join(notes))
    return "\n".join(lines)

"""Hand-written numpy implementations of the three core rulesets: the yardstick of `tier bench`.

PRODUCT §8 asks the vector engine to stay within 2× of "a hand-written numpy implementation of
the same rules". These are those implementations: RULESETS §1.1 (credit), §1.2 (guarantee) and
§1.3 (bank_layering) with the default parameters written in as constants, no ruleset file, no
expression language, no generality — what a careful developer would write for one ruleset.

They take the typed tables `engine.bench.generate_table` makes (and a Parquet file holds):
float64 numbers (NaN = blank), datetime64 dates (NaT = blank), booleans as bool / pandas
`boolean` / objects, text as anything; columns named by input key. They return what
`engine.evaluate(ruleset, table)` returns — input columns, then status, errors, notes and the
outputs with the same dtypes — and `tests/test_baseline.py` holds them to that on generated data,
so the benchmark compares two programs that do the same work: validation with every error code
in column order, notes, the decisions, EDATE dates, ERROR rows (待定, blanks) and the exact-decimal
rule (sums that land within rounding distance of a threshold are redone with `Decimal`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import numpy as np
import pandas as pd

PENDING = "待定"
_NAT = np.datetime64("NaT", "s")


# --------------------------------------------------------------------------- typed inputs
def _number(frame: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, blank) of a float column; an absent column is all blank."""
    if key not in frame:
        n = len(frame)
        return np.full(n, np.nan), np.ones(n, bool)
    values = frame[key].to_numpy(dtype=np.float64, na_value=np.nan)
    return values, np.isnan(values)


def _days(frame: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(days since 1970-01-01 as int64, blank) of a datetime64 column."""
    if key not in frame:
        n = len(frame)
        return np.zeros(n, np.int64), np.ones(n, bool)
    stamps = frame[key].to_numpy(dtype="datetime64[s]")
    blank = np.isnat(stamps)
    return stamps.astype("datetime64[D]").astype(np.int64), blank


def _flag(frame: pd.DataFrame, key: str) -> np.ndarray:
    """A boolean column with blanks read as False (the rulesets' blank default 否)."""
    if key not in frame:
        return np.zeros(len(frame), bool)
    column = frame[key]
    if column.dtype == bool:
        return column.to_numpy()
    return column.fillna(False).to_numpy(dtype=bool) if column.dtype != object else \
        np.array([value is True or value == 1 for value in column.to_numpy()], dtype=bool)


def _invalid_number(values: np.ndarray, blank: np.ndarray, low: float | None = None,
                    high: float | None = None, integer: bool = False) -> np.ndarray:
    bad = ~np.isfinite(values)
    if integer:
        bad |= np.floor(values) != values
    if low is not None:
        bad |= values < low
    if high is not None:
        bad |= values > high
    return bad & ~blank


# --------------------------------------------------------------------------- dates
def _add_months(days: np.ndarray, months: np.ndarray | int) -> np.ndarray:
    """EDATE on day numbers: the same day of the month, clamped to the target month's end."""
    month = days.astype("datetime64[D]").astype("datetime64[M]")
    first = month.astype("datetime64[D]").astype(np.int64)
    target = month + np.asarray(months, dtype=np.int64)
    start = target.astype("datetime64[D]").astype(np.int64)
    length = (target + 1).astype("datetime64[D]").astype(np.int64) - start
    return start + np.minimum(days - first, length - 1)


def _next_quarter_start(days: np.ndarray) -> np.ndarray:
    month = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    return ((month // 3 + 1) * 3).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _date_column(days: np.ndarray, present: np.ndarray) -> np.ndarray:
    result = np.full(len(days), _NAT, dtype="datetime64[s]")
    result[present] = days[present].astype("datetime64[D]").astype("datetime64[s]")
    return result


# --------------------------------------------------------------------------- codes and labels
def _join(items: Sequence[tuple[str, np.ndarray]], n: int) -> np.ndarray:
    """';'-joined codes per row: rows with any code grouped by their bit pattern."""
    out = np.full(n, "", dtype=object)
    rows = np.zeros(n, bool)
    for _code, mask in items:
        rows |= mask
    rows = np.flatnonzero(rows)
    if not len(rows):
        return out
    key = np.zeros(len(rows), np.int64)
    for bit, (_code, mask) in enumerate(items):
        key |= mask[rows].astype(np.int64) << bit
    patterns, inverse = np.unique(key, return_inverse=True)
    texts = np.array([";".join(code for bit, (code, _m) in enumerate(items) if int(p) >> bit & 1)
                      for p in patterns], dtype=object)
    out[rows] = texts[inverse]
    return out


def _labels(choice: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
    return np.array(list(labels), dtype=object)[choice]


def _numbers(choice: np.ndarray, values: Sequence[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64)[choice]


def _finish(frame: pd.DataFrame, error_codes: list[tuple[str, np.ndarray]],
            note_codes: list[tuple[str, np.ndarray]], outputs: dict[str, np.ndarray], tier: str) -> pd.DataFrame:
    """status/errors/notes, ERROR rows blanked (tier 待定), appended to the input columns."""
    n = len(frame)
    error = np.zeros(n, bool)
    for _code, mask in error_codes:
        error |= mask
    status = np.array(["OK", "ERROR"], dtype=object)[error.astype(np.int8)]
    errors = _join(error_codes, n)
    notes = _join([(code, mask & ~error) for code, mask in note_codes], n)
    columns = {"status": status, "errors": errors, "notes": notes}
    for key, values in outputs.items():
        if key == tier:
            values[error] = PENDING
        elif values.dtype == object:
            values[error] = None
        elif values.dtype.kind == "M":
            values[error] = _NAT
        else:
            values[error] = np.nan
        columns[key] = values
    added = [pd.Series(values, index=frame.index, name=name, copy=False,
                       dtype=object if values.dtype == object else None) for name, values in columns.items()]
    return pd.concat([frame, *added], axis=1)


# --------------------------------------------------------------------------- §1.1 credit
def credit(frame: pd.DataFrame) -> pd.DataFrame:
    """RULESETS §1.1 (CG), default parameters."""
    as_of, as_of_blank = _days(frame, "as_of_date")
    sales, sales_blank = _number(frame, "monthly_avg_sales")
    days, days_blank = _number(frame, "avg_collection_days")
    new = _flag(frame, "is_new_customer")
    last, last_blank = _days(frame, "last_visit_date")
    sales_bad = _invalid_number(sales, sales_blank, low=0)
    days_bad = _invalid_number(days, days_blank, low=0)
    days_missing = days_blank & ~new                    # CG-2: required unless a new customer
    defaulted = days_blank & new
    errors = [
        ("MISSING:as_of_date", as_of_blank),
        ("MISSING:monthly_avg_sales", sales_blank),
        ("INVALID:monthly_avg_sales", sales_bad),
        ("INVALID:avg_collection_days", days_bad),
        ("MISSING:avg_collection_days", days_missing),
        ("INVALID:last_visit_date", ~last_blank & ~as_of_blank & (last > as_of)),
    ]
    notes = [("DEFAULT:avg_collection_days=45", defaulted)]
    d = np.where(defaulted, 45.0, days)
    sales_choice = np.select([sales >= 20000, sales > 10000, sales > 5000], [0, 1, 2], 3)
    pay_choice = np.select([d <= 30, d <= 45, d <= 60], [0, 1, 2], 3)
    sales_score = _numbers(sales_choice, (70, 50, 40, 30))
    payment_score = _numbers(pay_choice, (30, 20, 10, 0))
    total = sales_score + payment_score
    grade = np.select([total >= 80, total >= 60], [0, 1], 2)
    months = np.array([1, 3, 6])[grade]
    due = _add_months(last, months)
    next_visit = np.where(last_blank, as_of, np.maximum(due, as_of))
    visit_status = np.where(last_blank, 0, np.where(due < as_of, 1, 2))
    outputs = {
        "sales_score": sales_score,
        "payment_score": payment_score,
        "total_score": total,
        "grade": _labels(grade, ("A", "B", "C")),
        "collection_alert": _labels((d > 60).astype(np.int8), ("否", "是")),
        "visit_frequency": _labels(grade, ("每月", "每季度", "每半年")),
        "next_visit_date": _date_column(next_visit, ~as_of_blank),
        "visit_status": _labels(visit_status, ("未拜访", "逾期", "按期")),
        "owner_role": _labels(grade, ("高级客户经理", "客户经理", "销售代表")),
        "time_budget_days_per_month": _numbers(grade, (1.25, 0.33, 0.17)),
    }
    return _finish(frame, errors, notes, outputs, tier="grade")


# --------------------------------------------------------------------------- §1.2 guarantee
def guarantee(frame: pd.DataFrame) -> pd.DataFrame:
    """RULESETS §1.2 (GR), default parameters."""
    as_of, as_of_blank = _days(frame, "as_of_date")
    start, start_blank = _days(frame, "guarantee_start_date")
    end, end_blank = _days(frame, "guarantee_end_date")
    overdue, overdue_blank = _number(frame, "overdue_days")
    compensated = _flag(frame, "compensated")
    major = _flag(frame, "major_adverse_event")
    ratio, ratio_blank = _number(frame, "asset_liability_ratio")
    revenue, revenue_blank = _number(frame, "revenue_yoy_change")
    coverage, coverage_blank = _number(frame, "counter_guarantee_coverage")
    others, others_blank = _number(frame, "other_warning_count")
    last, last_blank = _days(frame, "last_visit_date")
    overdue_bad = _invalid_number(overdue, overdue_blank, low=0, integer=True)
    others_bad = _invalid_number(others, others_blank, low=0, integer=True)
    ratio_bad = _invalid_number(ratio, ratio_blank, low=0, high=10)
    revenue_bad = _invalid_number(revenue, revenue_blank, low=-1)
    coverage_bad = _invalid_number(coverage, coverage_blank, low=0)
    errors = [
        ("MISSING:as_of_date", as_of_blank),
        ("MISSING:guarantee_start_date", start_blank),
        ("INVALID:guarantee_end_date", ~end_blank & ~start_blank & (end < start)),
        ("INVALID:overdue_days", overdue_bad),
        ("INVALID:asset_liability_ratio", ratio_bad),
        ("INVALID:revenue_yoy_change", revenue_bad),
        ("INVALID:counter_guarantee_coverage", coverage_bad),
        ("INVALID:other_warning_count", others_bad),
        ("INVALID:last_visit_date", ~last_blank & ~as_of_blank & (last > as_of)),
    ]
    notes = [("MISSING_OPTIONAL:asset_liability_ratio", ratio_blank),
             ("MISSING_OPTIONAL:revenue_yoy_change", revenue_blank),
             ("MISSING_OPTIONAL:counter_guarantee_coverage", coverage_blank)]
    overdue = np.where(overdue_blank, 0.0, overdue)
    others = np.where(others_blank, 0.0, others)
    flags = (ratio > 0.70).astype(np.float64) + (revenue <= -0.30) + (coverage < 1.00)
    warnings = flags + others
    any_missing = ratio_blank | revenue_blank | coverage_blank
    rule = np.select([compensated, overdue > 90, major, overdue >= 1, warnings >= 2, warnings == 1, any_missing],
                     [0, 1, 2, 3, 4, 5, 6], 7)
    risk = np.array([3, 3, 3, 2, 2, 1, 1, 0])[rule]  # 0 良好, 1 正常, 2 关注, 3 风险
    five = np.select([overdue == 0, overdue <= 90, overdue <= 270, overdue <= 360], [0, 1, 2, 3], 4)
    routine = last_blank | (last < start)
    months = np.array([6, 3, 1, 0])[risk]
    regular_due = _add_months(last, months) + np.array([0, 0, 0, 15])[risk]
    due = np.where(routine, start + 15, regular_due)
    next_visit = np.maximum(due, as_of)
    reminder = _add_months(end, -1)
    outputs = {
        "warning_flag_count": warnings,
        "risk_class": _labels(risk, ("良好", "正常", "关注", "风险")),
        "class_rule": _labels(rule, tuple(f"GR-3{letter}" for letter in "abcdefgh")),
        "overdue_five_class": _labels(five, ("正常类", "关注类", "次级类", "可疑类", "损失类")),
        "visit_type": np.where(routine, "例行回访", _labels(risk, ("定期回访",) * 3 + ("特别回访",))).astype(object),
        "visit_frequency": _labels(risk, ("每半年", "每季度", "每月", "每半月")),
        "next_visit_date": _date_column(next_visit, ~as_of_blank & ~start_blank),
        "visit_status": _labels((due >= as_of).astype(np.int8), ("逾期", "按期")),
        "plan_due_date": _date_column(_next_quarter_start(as_of) + 9, ~as_of_blank),
        "repayment_reminder_date": _date_column(reminder, ~end_blank),
        "owner_role": _labels(risk, ("项目经理", "项目经理", "项目经理", "风险管理部")),
        "support_roles": _labels(risk, (None, None, "风险管理部", "项目经理;事业部负责人;法务")),
        "time_budget_days_per_year": _numbers(risk, (1.0, 2.0, 12.0, 24.0)),
        "new_guarantee_allowed": _labels(risk, ("是", "是", "否", "否")),
    }
    return _finish(frame, errors, notes, outputs, tier="risk_class")


# --------------------------------------------------------------------------- §1.3 bank_layering
_SEGMENT_MINIMA = (6_000_000.0, 500_000.0, 50_000.0)


def _exact_sums(first: np.ndarray, second: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """first + second in exact decimals (each float read as its shortest repr), as floats."""
    return np.array([float(Decimal(repr(float(a))) + Decimal(repr(float(b))))
                     for a, b in zip(first[rows], second[rows])], dtype=np.float64)


def bank_layering(frame: pd.DataFrame) -> pd.DataFrame:
    """RULESETS §1.3 (BL), default parameters."""
    as_of, as_of_blank = _days(frame, "as_of_date")
    deposit, deposit_blank = _number(frame, "deposit_avg_balance")
    wealth, wealth_blank = _number(frame, "wealth_avg_balance")
    loan, loan_blank = _number(frame, "loan_balance")
    count, count_blank = _number(frame, "txn_count_90d")
    last_txn, txn_blank = _days(frame, "last_txn_date")
    contact, contact_blank = _days(frame, "last_contact_date")
    deposit_bad = _invalid_number(deposit, deposit_blank, low=0)
    wealth_bad = _invalid_number(wealth, wealth_blank, low=0)
    loan_bad = _invalid_number(loan, loan_blank, low=0)
    count_bad = _invalid_number(count, count_blank, low=0, integer=True)
    count = np.where(count_blank, 0.0, count)
    since = as_of - last_txn
    dates_usable = ~as_of_blank & ~txn_blank
    inconsistent = dates_usable & ~count_bad & (last_txn <= as_of) & (
        ((count > 0) & (since >= 90)) | ((count == 0) & (since <= 89)))
    errors = [
        ("MISSING:as_of_date", as_of_blank),
        ("INVALID:deposit_avg_balance", deposit_bad),
        ("MISSING:balances", deposit_blank & wealth_blank & loan_blank),
        ("INVALID:wealth_avg_balance", wealth_bad),
        ("INVALID:loan_balance", loan_bad),
        ("INVALID:txn_count_90d", count_bad),
        ("INCONSISTENT:txn_count_90d", inconsistent),
        ("INVALID:last_txn_date", dates_usable & (last_txn > as_of)),
        ("INVALID:last_contact_date", ~contact_blank & ~as_of_blank & (contact > as_of)),
    ]
    deposit = np.where(deposit_blank, 0.0, deposit)
    wealth = np.where(wealth_blank, 0.0, wealth)
    loan = np.where(loan_blank, 0.0, loan)
    aum = deposit + wealth
    # RULESETS §0.3: a float sum a hair from a threshold is decided on the exact decimal sum.
    whole = (np.trunc(deposit) == deposit) & (np.trunc(wealth) == wealth) & (np.abs(aum) < 2.0**53)
    near = np.zeros(len(aum), bool)
    for minimum in _SEGMENT_MINIMA:
        near |= np.abs(aum - minimum) <= 1e-9 * np.maximum(np.maximum(np.abs(aum), minimum), 1.0)
    redo = np.flatnonzero(near & ~whole & ~deposit_bad & ~wealth_bad)
    if len(redo):
        aum[redo] = _exact_sums(deposit, wealth, redo)
    segment = np.select([aum >= 6_000_000, aum >= 500_000, aum >= 50_000], [0, 1, 2], 3)
    base = np.array([2, 2, 1, 0])[segment]                    # 0 低, 1 中, 2 高
    uplift = (loan >= 1_000_000) & (base < 2)
    value = base + uplift
    activity = np.select([(~txn_blank & (since >= 365)) | (txn_blank & (count == 0)), count >= 3], [2, 0], 1)
    layer = (2 - value) * 3 + activity                        # 高价值-活跃 … 低价值-沉睡
    interval = np.array([30, 30, 7, 90, 60, 30, 180, 180, 90], dtype=np.int64)[layer]
    due = contact + interval
    next_contact = np.where(contact_blank, as_of, np.maximum(due, as_of))
    contact_status = np.where(contact_blank, 0, np.where(due < as_of, 1, 2))
    resource = np.where(segment == 0, 0, 3 - value)          # 0 私人银行, 1 高, 2 中, 3 低
    outputs = {
        "aum": aum,
        "segment": _labels(segment, ("私人银行", "财富", "潜力", "大众")),
        "value_tier": _labels(value, ("低", "中", "高")),
        "activity_tier": _labels(activity, ("活跃", "潜在", "沉睡")),
        "customer_layer": _labels(layer, tuple(f"{v}价值-{a}" for v in "高中低" for a in ("活跃", "潜在", "沉睡"))),
        "strategy": _labels(layer, ("维护深耕", "重点提升", "紧急挽留", "培育升级", "交叉营销", "激活唤醒",
                                    "线上经营", "批量营销", "低成本维护")),
        "contact_interval_days": interval.astype(np.float64),
        "next_contact_date": _date_column(next_contact, ~as_of_blank),
        "contact_status": _labels(contact_status, ("未联系", "逾期", "按期")),
        "owner_role": _labels(resource, ("私人银行家", "专属理财经理", "理财经理", "远程银行团队")),
        "contact_channel": _labels(resource, ("面访", "面访", "电话+面访", "线上/电话")),
        "time_budget_hours_per_month": _numbers(resource, (4.0, 2.0, 1.0, 0.25)),
    }
    return _finish(frame, errors, [("LOAN_UPLIFT", uplift)], outputs, tier="customer_layer")


BASELINES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "credit": credit, "guarantee": guarantee, "bank_layering": bank_layering}

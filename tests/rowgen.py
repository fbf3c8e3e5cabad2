"""Boundary-rich random rows for any ruleset: the raw cells a messy workbook would hold.

Numbers cluster at every constant the ruleset compares with (t − 0.01, t, t + 0.01), dates at
month ends and around as_of_date, and a fraction of cells are blank or malformed, so one run
exercises every band, every error code and the exact-decimal edges.
"""
from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from engine.bench import number_constants
from engine.compile import CompiledRuleset

BAD_TEXT = ["abc", "无", "-", "N/A", "#N/A", "２０", "1,00", "12.5.1", "不知道"]


def constants(compiled: CompiledRuleset) -> list[Decimal]:
    """Every number literal the ruleset compares with (engine.bench owns the walk)."""
    return number_constants(compiled)


def _number(rng: random.Random, consts: list[Decimal], inp) -> object:
    pick = rng.random()
    if pick < 0.55 and consts:
        base = rng.choice(consts)
        step = rng.choice([Decimal("0"), Decimal("0.01"), Decimal("-0.01"), Decimal("1"), Decimal("-1"),
                           Decimal("0.0001"), Decimal("-0.0001")])
        value = base + step
    elif pick < 0.8:
        value = Decimal(rng.randint(0, 200_000)) / rng.choice([1, 1, 100])
    else:
        value = Decimal(rng.randint(0, 10_000_000))
    if inp.type == "integer":
        value = value.to_integral_value()
    if inp.min is not None and value < inp.min and rng.random() < 0.8:
        value = inp.min
    form = rng.random()
    if inp.type == "fraction" and form < 0.2:
        return f"{value * 100}%"
    if form < 0.35:
        return float(value)
    if form < 0.45 and abs(value) >= 1000:
        return f"{value:,}"
    return str(value)


def _date(rng: random.Random, as_of: dt.date) -> object:
    choice = rng.random()
    if choice < 0.5:
        day = as_of - dt.timedelta(days=rng.choice([0, 1, 14, 15, 16, 29, 30, 31, 89, 90, 91, 182, 183, 364, 365, 366, 400]))
    elif choice < 0.7:
        day = as_of + dt.timedelta(days=rng.choice([1, 30]))
    else:
        year = rng.choice([2023, 2024, 2025])
        month = rng.randint(1, 12)
        last = (dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)).day
        day = dt.date(year, month, rng.choice([1, 15, 28, last]))
    form = rng.random()
    if form < 0.6:
        return day.isoformat()
    if form < 0.75:
        return f"{day.year}/{day.month}/{day.day}"
    if form < 0.85:
        return f"{day.year}年{day.month}月{day.day}日"
    return dt.datetime(day.year, day.month, day.day)


def random_row(rng: random.Random, compiled: CompiledRuleset, consts: list[Decimal]) -> dict[str, object]:
    as_of = rng.choice([dt.date(2024, 3, 31), dt.date(2024, 6, 30), dt.date(2024, 12, 31), dt.date(2025, 2, 28),
                        dt.date(2024, 2, 29), dt.date(2025, 9, 15)])
    row: dict[str, object] = {}
    for inp in compiled.definition.inputs:
        roll = rng.random()
        if roll < 0.08:
            row[inp.key] = rng.choice(["", None, "  "])
            continue
        if roll < 0.11 and inp.type not in ("text",):
            row[inp.key] = rng.choice(BAD_TEXT)
            continue
        if inp.key == "as_of_date":
            row[inp.key] = as_of.isoformat() if rng.random() < 0.8 else dt.datetime(as_of.year, as_of.month, as_of.day)
        elif inp.type in ("number", "fraction", "integer"):
            row[inp.key] = _number(rng, consts, inp)
        elif inp.type == "date":
            row[inp.key] = _date(rng, as_of)
        elif inp.type == "boolean":
            row[inp.key] = rng.choice(["是", "否", "Y", "n", "TRUE", "false", "1", "0", True, False, 1.0])
        elif inp.type == "enum":
            row[inp.key] = rng.choice(list(inp.values) + [f" {inp.values[0]} "])
        else:
            row[inp.key] = rng.choice(["客户甲", "Acme Ltd", "=cmd|' /C calc'!A0", "０１２", "12", "E", "012"])
    return row


def random_rows(compiled: CompiledRuleset, n: int, seed: int = 0) -> list[dict[str, object]]:
    rng = random.Random(seed)
    consts = constants(compiled)
    return [random_row(rng, compiled, consts) for _ in range(n)]

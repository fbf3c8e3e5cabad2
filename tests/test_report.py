"""The quarterly tier report (issue 7): every figure checked against data built to a known answer.

The guarantee quarters below are constructed on purpose — 10 loans go 良好→关注, 3 go 正常→风险,
some improve, two are new, one exits, one becomes an ERROR row — so the expected migration matrix
is written down from the construction (`MOVES`), never from the report code. The workbook is read
back with openpyxl and compared cell by cell; the visit calendar is compared with what the ruleset
itself outputs for each row; workload totals with the spec's time budgets (GR-9: 1/2/12/24 days a
year). LibreOffice must open the file (skipped with a reason when `soffice` is missing).

Regenerate the PNGs in docs/report/ with::

    python -m tests.test_report docs/report
"""
from __future__ import annotations

import datetime as dt
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from engine import api
from engine import report as rp
from engine.cli import main as tier_main
from engine.errors import TierError

AS_OF = dt.date(2024, 6, 30)
PREV_AS_OF = dt.date(2024, 3, 31)
WINDOW_END = dt.date(2024, 9, 30)
HEADERS = ["担保业务编号", "被担保人名称", "事业部", "项目经理", "在保余额(元)", "分类基准日", "担保起始日", "担保到期日",
           "主债务逾期天数", "是否已代偿", "重大风险事件", "资产负债率", "销售收入同比变动", "反担保覆盖率",
           "其他一般预警信号数", "最近回访日期"]
ORDER = ("良好", "正常", "关注", "风险")
BUDGET_PER_YEAR = {"良好": 1.0, "正常": 2.0, "关注": 12.0, "风险": 24.0}  # RULESETS §1.2 GR-9 defaults
ROLE = {"良好": "项目经理", "正常": "项目经理", "关注": "项目经理", "风险": "风险管理部"}
ERROR = "ERROR"

# (previous class, current class, how many): None = absent that quarter.
MOVES: list[tuple[str | None, str | None, int]] = [
    ("良好", "关注", 10),
    ("正常", "风险", 3),
    ("良好", "良好", 6),
    ("正常", "正常", 4),
    ("关注", "正常", 4),
    ("风险", "关注", 2),
    ("关注", "风险", 1),
    ("良好", "正常", 1),
    ("风险", "良好", 1),
    ("关注", ERROR, 1),
    (None, "关注", 1),
    (None, "良好", 1),
    ("正常", None, 1),
]
MANAGERS = ["张伟", "李娜", "王芳", "刘洋"]
DEPARTMENTS = ["一部", "二部", "三部"]


# --------------------------------------------------------------------------- data built to a known answer
def _class_cells(cls: str, variant: int) -> dict[str, str]:
    """Inputs that make GR-3 decide `cls` (two different rules per class, so reasons differ)."""
    cells = {"主债务逾期天数": "", "是否已代偿": "", "重大风险事件": "", "资产负债率": "0.50", "销售收入同比变动": "0.05",
             "反担保覆盖率": "1.20", "其他一般预警信号数": "0"}
    if cls == "正常":
        cells["其他一般预警信号数"] = "1"  # GR-3f
    elif cls == "关注":
        cells.update({"主债务逾期天数": "15"} if variant % 2 else {"其他一般预警信号数": "2"})  # GR-3d / GR-3e
    elif cls == "风险":
        cells.update({"是否已代偿": "是"} if variant % 2 else {"主债务逾期天数": "120"})  # GR-3a / GR-3b
    elif cls == ERROR:
        cells["主债务逾期天数"] = "abc"
    return cells


# Days before the as-of date of the last visit: (overdue, due inside next quarter, due later).
_LAST_VISIT_DAYS = {"良好": (200, 120, 10), "正常": (100, 40, 5), "关注": (45, 20, 3), "风险": (20, 5, 2), ERROR: (5, 5, 5)}


def _row(gid: str, cls: str, as_of: dt.date, index: int) -> dict[str, object]:
    variant = index % 3
    last = as_of - dt.timedelta(days=_LAST_VISIT_DAYS[cls][variant])
    row: dict[str, object] = {
        "担保业务编号": gid, "被担保人名称": f"测试{gid}公司", "事业部": DEPARTMENTS[index % 3],
        "项目经理": MANAGERS[0] if index < 10 else MANAGERS[index % 4], "在保余额(元)": f"{(index + 1) * 100_000:,}",
        "分类基准日": as_of.isoformat(), "担保起始日": "2023-01-10", "担保到期日": "2026-01-10",
        "最近回访日期": last.isoformat() if index % 7 else "",  # some never visited → 例行回访 (overdue)
    }
    row.update(_class_cells(cls, index))
    return row


def guarantee_quarters(extra: int = 0, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple]]:
    """(previous raw table, current raw table, [(gid, prev class, current class)]).

    `extra` adds random entities on top of MOVES (for the docs pictures); the tests use extra=0.
    """
    rng = random.Random(seed)
    plan: list[tuple[str | None, str | None]] = [(p, c) for p, c, n in MOVES for _ in range(n)]
    weights = {"良好": (70, 22, 6, 2), "正常": (15, 65, 15, 5), "关注": (5, 25, 55, 15), "风险": (2, 5, 18, 75)}
    for _ in range(extra):
        before = rng.choices(ORDER, (30, 40, 20, 10))[0]
        after = rng.choices(ORDER, weights[before])[0]
        plan.append((before, after) if rng.random() > 0.06 else (None, after) if rng.random() > 0.5 else (before, None))
    prev_rows, cur_rows, truth = [], [], []
    for index, (before, after) in enumerate(plan):
        gid = f"G{index + 1:03d}"
        truth.append((gid, before, after))
        if before is not None:
            prev_rows.append(_row(gid, before, PREV_AS_OF, index))
        if after is not None:
            cur_rows.append(_row(gid, after, AS_OF, index))
    return (pd.DataFrame(prev_rows, columns=HEADERS), pd.DataFrame(cur_rows, columns=HEADERS), truth)


def sheet_rows(book: openpyxl.Workbook, name: str) -> list[tuple]:
    return [tuple(r) for r in book[name].iter_rows(values_only=True)]


def read_matrix(rows: list[tuple], corner: str = rp.MATRIX_CORNER) -> dict[tuple[str, str], object]:
    """The first table whose top-left cell is `corner`: {(row label, column label): value}."""
    top = next(i for i, r in enumerate(rows) if r and r[0] == corner)
    header = [h for h in rows[top] if h is not None]
    cells: dict[tuple[str, str], object] = {}
    for line in rows[top + 1:]:
        if line[0] is None:
            break
        for col, name in enumerate(header[1:], start=1):
            cells[(line[0], name)] = line[col]
        if line[0] == rp.TOTAL:
            break
    return cells


def expected_matrix() -> dict[tuple[str, str], int]:
    """The migration matrix written down from MOVES (the oracle)."""
    tiers = [*ORDER, rp.PENDING]
    label = {None: None, ERROR: rp.PENDING}
    cells = {(r, c): 0 for r in [*tiers, rp.NEW, rp.TOTAL] for c in [*tiers, rp.EXITED, rp.TOTAL]}
    for before, after, count in MOVES:
        row = rp.NEW if before is None else label.get(before, before)
        col = rp.EXITED if after is None else label.get(after, after)
        for r, c in ((row, col), (row, rp.TOTAL), (rp.TOTAL, col), (rp.TOTAL, rp.TOTAL)):
            cells[(r, c)] += count
    return cells


@pytest.fixture(scope="module")
def quarters() -> tuple[pd.DataFrame, pd.DataFrame, list[tuple]]:
    return guarantee_quarters()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, quarters) -> tuple[rp.QuarterReport, Path]:
    previous, current, _truth = quarters
    out = tmp_path_factory.mktemp("report") / "guarantee_report.xlsx"
    # this quarter arrives already evaluated (as `tier eval --explain` writes it); last quarter raw
    evaluated = api.evaluate("guarantee", current, explain=True)
    report = rp.build_report_from_frames("guarantee", evaluated, previous, out, capacity_days=10)
    return report, out


# --------------------------------------------------------------------------- tier order and columns
@pytest.mark.parametrize(("ruleset", "order"), [
    ("credit", ("A", "B", "C")),
    ("guarantee", ("良好", "正常", "关注", "风险")),
    ("bank_layering", ("高价值-活跃", "高价值-潜在", "高价值-沉睡", "中价值-活跃", "中价值-潜在", "中价值-沉睡",
                       "低价值-活跃", "低价值-潜在", "低价值-沉睡")),
])
def test_tier_order_is_read_from_the_ruleset_best_first(ruleset: str, order: tuple[str, ...]) -> None:
    compiled = api.compile(ruleset)
    assert rp.tier_order(compiled) == order
    assert rp.tier_order(compiled, ["C", "B", "A"]) == ("C", "B", "A")


def test_tier_order_override_rejects_repeats() -> None:
    with pytest.raises(TierError):
        rp.tier_order(api.compile("credit"), ["A", "A"])


@pytest.mark.parametrize(("ruleset", "balances"), [
    ("credit", ["monthly_avg_sales"]),
    ("guarantee", []),
    ("bank_layering", ["aum", "loan_balance"]),  # deposit + wealth are aum's parts: not counted twice
])
def test_balance_columns_detected(ruleset: str, balances: list[str]) -> None:
    assert rp.detect_balances(api.compile(ruleset)) == balances


def test_columns_detected_beside_the_ruleset(built) -> None:
    report, _path = built
    columns = report.current.columns
    assert (columns.key, columns.group, columns.owner) == ("担保业务编号", "事业部", "项目经理")
    assert [label for label, _h in columns.balances] == ["在保余额"]
    assert not report.current.evaluated_here and report.previous is not None and report.previous.evaluated_here


# --------------------------------------------------------------------------- migration
def test_migration_figures_match_the_construction(built) -> None:
    report, _path = built
    moves = report.migration
    assert moves is not None
    want = expected_matrix()
    got = {(r, c): int(moves.matrix.loc[r, c]) for r, c in want}
    assert got == want
    assert (moves.upgraded, moves.downgraded, moves.unchanged) == (4 + 2 + 1, 10 + 3 + 1 + 1, 6 + 4)
    assert (moves.comparable, moves.incomparable, moves.matched, moves.new, moves.exited) == (32, 1, 33, 2, 1)
    assert moves.downgrade_rate == pytest.approx(15 / 32) and moves.upgrade_rate == pytest.approx(7 / 32)
    assert moves.unchanged_rate == pytest.approx(10 / 32)
    assert (moves.previous_total, moves.current_total) == (34, 35)


def test_migration_sheet_cell_by_cell(built) -> None:
    _report, path = built
    book = openpyxl.load_workbook(path, data_only=True)
    rows = sheet_rows(book, "迁移矩阵")
    assert read_matrix(rows) == expected_matrix()
    # the second matrix (row percentages) starts at the next corner cell
    second = [i for i, r in enumerate(rows) if r and r[0] == rp.MATRIX_CORNER][1]
    percentages = read_matrix(rows[second:])
    assert percentages[("良好", "关注")] == pytest.approx(10 / 17)
    assert percentages[("正常", "风险")] == pytest.approx(3 / 8)
    assert percentages[("正常", rp.EXITED)] == pytest.approx(1 / 8)
    figures = {r[0]: (r[1], r[2]) for r in rows if r and r[0] in ("上调", "下调", "不变", "新增", "退出")}
    assert figures["上调"] == (7, pytest.approx(7 / 32))
    assert figures["下调"] == (15, pytest.approx(15 / 32))
    assert figures["不变"] == (10, pytest.approx(10 / 32))
    assert figures["新增"] == (2, pytest.approx(2 / 35))
    assert figures["退出"] == (1, pytest.approx(1 / 34))


def test_downgraded_rows_listed_with_the_rule_that_decided(built, quarters) -> None:
    _report, path = built
    _prev, _cur, truth = quarters
    rank = {t: i for i, t in enumerate(ORDER)}
    want = {gid: (b, a) for gid, b, a in truth if b in rank and a in rank and rank[a] > rank[b]}
    rows = sheet_rows(openpyxl.load_workbook(path, data_only=True), "下调明细")
    header = rows.index(next(r for r in rows if r and r[0] == "序号"))
    listed = [r for r in rows[header + 1:] if isinstance(r[0], int)]
    assert {r[1]: (r[5], r[6]) for r in listed} == want
    steps = [r[7] for r in listed]
    assert steps == sorted(steps, reverse=True) and steps[0] == 2  # 正常→风险 first
    evidence = {"GR-3a": "是否已代偿=是", "GR-3b": "主债务逾期天数=120", "GR-3d": "主债务逾期天数=15",
                "GR-3e": "预警信号数=2; 其他一般预警信号数=2", "GR-3f": "预警信号数=1; 其他一般预警信号数=1"}
    for line in listed:
        rule, values, chain, before = line[8], line[9], line[10], line[11]
        if line[6] == "风险":
            assert rule in ("GR-3a: compensated = true", "GR-3b: overdue_days > 90"), rule
        if line[6] == "关注":
            assert rule in ("GR-3d: overdue_days >= 1", "GR-3e: warning_flag_count >= 2"), rule
        assert values.startswith(evidence[rule[:5]]), values  # the numbers the condition tested
        assert chain == "GR-1; GR-2"  # only the rules that led to the tier (no visit plan rules)
        assert before.startswith({"良好": "GR-3h", "正常": "GR-3f", "关注": "GR-3"}[line[5]])


def test_summary_counts_balances_and_groups(built, quarters) -> None:
    _report, path = built
    _prev, current, truth = quarters
    rows = sheet_rows(openpyxl.load_workbook(path, data_only=True), "汇总")
    top = next(i for i, r in enumerate(rows) if r and r[0] == "等级")
    header = rows[top]
    table = {r[0]: dict(zip(header, r)) for r in rows[top + 1: top + 7]}
    now = pd.Series([a if a != ERROR else rp.PENDING for _g, _b, a in truth if a]).value_counts()
    before = pd.Series([b for _g, b, _a in truth if b]).value_counts()
    for tier in (*ORDER, rp.PENDING):
        assert table[tier]["本季户数"] == now.get(tier, 0)
        assert table[tier]["本季占比"] == pytest.approx(now.get(tier, 0) / 35)
        assert table[tier]["上季户数"] == before.get(tier, 0)
    assert table[rp.TOTAL]["本季户数"] == 35 and table[rp.TOTAL]["上季户数"] == 34
    balances = current.assign(b=current["在保余额(元)"].str.replace(",", "").astype(float),
                              t=[a if a != ERROR else rp.PENDING for _g, _b, a in truth if a])
    for tier in ORDER:
        assert table[tier]["在保余额(万元)"] == pytest.approx(balances.loc[balances["t"] == tier, "b"].sum() / 10000)
    group_top = next(i for i, r in enumerate(rows) if r and r[0] == "事业部")
    groups = {r[0]: r for r in rows[group_top + 1:] if r and r[0] in DEPARTMENTS}
    for dept in DEPARTMENTS:
        assert groups[dept][len(ORDER) + 2] == int((current["事业部"] == dept).sum())  # 合计 column


# --------------------------------------------------------------------------- visit calendar
def test_calendar_lists_every_row_due_next_quarter_overdue_first(built, quarters) -> None:
    report, path = built
    _prev, current, _truth = quarters
    truth = api.evaluate("guarantee", current)  # the ruleset's own outputs are the oracle
    ok = truth[truth["status"] == "OK"]
    due = ok[(ok["visit_status"] == "逾期") | (ok["next_visit_date"] <= pd.Timestamp(WINDOW_END))]
    later = ok[(ok["visit_status"] != "逾期") & (ok["next_visit_date"] > pd.Timestamp(WINDOW_END))]
    assert len(later) > 0 and (ok["visit_status"] == "逾期").sum() > 0  # the data exercises both
    rows = sheet_rows(openpyxl.load_workbook(path, data_only=True), "回访计划表")
    top = next(i for i, r in enumerate(rows) if r and r[0] == "序号")
    header = rows[top]
    listed = [dict(zip(header, r)) for r in rows[top + 1:] if isinstance(r[0], int)]
    planned = [r for r in listed if r["等级"] != rp.PENDING]
    assert {r["匹配键"] for r in planned} == set(due["担保业务编号"])
    assert [r["序号"] for r in listed] == list(range(1, len(listed) + 1))
    overdue = [r["回访状态"] == "逾期" for r in planned]
    assert overdue == sorted(overdue, reverse=True) and any(overdue)  # every overdue row before any other
    by_id = due.set_index("担保业务编号")
    for line in planned:
        want = by_id.loc[line["匹配键"]]
        assert line["下次回访日期"].date() == want["next_visit_date"].date()
        assert (line["回访类型"], line["主责角色"], line["回访状态"]) == (
            want["visit_type"], want["owner_role"], want["visit_status"])
        assert line["计划报送截止"].date() == dt.date(2024, 7, 10)  # GR-7: 10th of the next quarter
    dates = [r["下次回访日期"] for r in planned if r["回访状态"] != "逾期"]
    assert dates == sorted(dates)
    for line in planned:  # each row sits in the week its date falls in
        label = line["时段"]
        if label.startswith("第"):
            start, stop = (dt.date(2024, int(p[:2]), int(p[3:])) for p in label.split(" ")[1].split("~"))
            assert start <= line["下次回访日期"].date() <= stop
    assert report.later == len(later)
    errors = [r for r in listed if r["等级"] == rp.PENDING]
    assert [r["匹配键"] for r in errors] == list(truth.loc[truth["status"] == "ERROR", "担保业务编号"])
    assert rows.index(next(r for r in rows if r[0] and str(r[0]).startswith(rp.OVERDUE_LABEL))) == top + 1
    # the per-week counts behind the chart: every week of Q3 2024 (07-01 … 09-30 is 14 Mondays), empty ones too
    weeks = [b for b in report.by_bucket["bucket"] if b.startswith("第")]
    assert weeks[0] == "第1周 07-01~07-07" and weeks[-1] == "第14周 09-30~09-30" and len(weeks) == 14
    assert report.by_bucket["visits"].sum() == len(listed)


def test_calendar_by_month_and_plan_due_for_rulesets_without_one() -> None:
    current = pd.DataFrame([
        ["C1", "甲", AS_OF.isoformat(), "25000", "20", "否", "2024-06-10"],   # A: +1M → 2024-07-10
        ["C2", "乙", AS_OF.isoformat(), "15000", "40", "否", "2024-05-20"],   # B: +3M → 2024-08-20
        ["C3", "丙", AS_OF.isoformat(), "3000", "70", "否", "2024-01-31"],    # C: +6M → 2024-07-31
        ["C4", "丁", AS_OF.isoformat(), "25000", "20", "否", "2024-06-29"],   # A: +1M → 2024-07-29
        ["C5", "戊", AS_OF.isoformat(), "3000", "70", "否", "2024-06-01"],    # C: → 2024-12-01, later
    ], columns=["客户编号", "客户名称", "评估日期", "月均销售额", "平均回款天数", "是否新客户", "最近拜访日期"])
    report = rp.build_report_from_frames("credit", current, calendar_by="month")
    assert report.plan_due == dt.date(2024, 7, 10)
    assert list(report.calendar["key"]) == ["C1", "C4", "C3", "C2"]
    assert list(report.calendar["bucket"]) == ["2024年7月"] * 3 + ["2024年8月"]
    assert report.later == 1 and report.migration is None


# --------------------------------------------------------------------------- workload
def test_workload_totals_per_role_and_owner(built, quarters) -> None:
    _report, path = built
    _prev, current, truth = quarters
    classes = {g: a for g, _b, a in truth if a and a != ERROR}
    owners = dict(zip(current["担保业务编号"], current["项目经理"]))
    role_days: dict[str, float] = {}
    owner_days: dict[str, float] = {}
    for gid, cls in classes.items():
        per_month = BUDGET_PER_YEAR[cls] / 12
        role_days[ROLE[cls]] = role_days.get(ROLE[cls], 0.0) + per_month
        owner_days[owners[gid]] = owner_days.get(owners[gid], 0.0) + per_month
    assert role_days["项目经理"] == pytest.approx((8 * 1 + 9 * 2 + 13 * 12) / 12)
    rows = sheet_rows(openpyxl.load_workbook(path, data_only=True), "工作量")
    role_top = next(i for i, r in enumerate(rows) if r and r[0] == "主责角色")
    role_end = next(i for i in range(role_top, len(rows)) if rows[i][0] == rp.TOTAL)
    roles = {r[0]: r for r in rows[role_top + 1:role_end]}
    assert set(roles) == set(role_days)
    assert rows[role_end][2] == pytest.approx(sum(role_days.values()))
    for role, days in role_days.items():
        assert roles[role][2] == pytest.approx(days)
        assert roles[role][3] == pytest.approx(days / 10)  # people needed at 10 days each
    owner_top = next(i for i, r in enumerate(rows) if i > role_end and r and r[0] == "项目经理")
    header = rows[owner_top]
    table = {r[0]: dict(zip(header, r)) for r in rows[owner_top + 1:] if r and r[0] in owner_days}
    assert set(table) == set(owner_days)
    for owner, days in owner_days.items():
        assert table[owner]["月度需求(天)"] == pytest.approx(days)
        assert table[owner]["利用率"] == pytest.approx(days / 10)
        assert table[owner]["状态"] == ("超负荷" if days > 10 else "接近满负荷" if days >= 8 else "正常")
    assert table["张伟"]["状态"] == "超负荷"  # the ten 良好→关注 loans are all his


def test_workload_normalises_hours_and_uses_staff() -> None:
    current = pd.DataFrame([
        ["P1", AS_OF.isoformat(), "7000000", "0", "0", "5", "2024-06-20", "2024-06-01"],  # 私人银行 4 h
        ["P2", AS_OF.isoformat(), "600000", "0", "0", "5", "2024-06-20", "2024-06-01"],   # 财富/高 2 h
        ["P3", AS_OF.isoformat(), "600000", "0", "0", "5", "2024-06-20", "2024-06-01"],   # 财富/高 2 h
    ], columns=["客户号", "评估日期", "存款月日均余额", "理财月日均余额", "贷款余额", "近90天交易笔数", "最近交易日期",
                "最近联系日期"])
    report = rp.build_report_from_frames("bank_layering", current, staff={"专属理财经理": 1}, capacity_days=0.25)
    roles = report.by_role
    assert roles.loc["私人银行家", "days"] == pytest.approx(4 / 8)
    assert roles.loc["专属理财经理", "days"] == pytest.approx(4 / 8)
    assert roles.loc["专属理财经理", "utilisation"] == pytest.approx(2.0)
    assert roles.loc["专属理财经理", "flag"] == "超负荷"
    assert roles.loc["私人银行家", "flag"] == "需 2 人"  # no headcount given: people needed instead
    assert report.by_tier.loc["高价值-活跃", "bal:金融资产"] == pytest.approx(8_200_000)


# --------------------------------------------------------------------------- credit and the CLI
def test_credit_migration_through_the_cli(tmp_path: Path) -> None:
    header = ["客户编号", "客户名称", "客户经理", "评估日期", "月均销售额", "平均回款天数", "是否新客户", "最近拜访日期"]
    grade_cells = {"A": ("25000", "20"), "B": ("15000", "40"), "C": ("3000", "70")}
    plan = [("A", "B")] * 5 + [("C", "A")] * 2 + [("B", "B")] * 3 + [("B", "C")] + [("A", None)] + [(None, "C")]

    def table(as_of: dt.date, which: int) -> pd.DataFrame:
        rows = []
        for index, pair in enumerate(plan):
            grade = pair[which]
            if grade is not None:
                sales, days = grade_cells[grade]
                rows.append([f"K{index:02d}", f"客户{index}", "赵六", as_of.isoformat(), sales, days, "否",
                             (as_of - dt.timedelta(days=10)).isoformat()])
        return pd.DataFrame(rows, columns=header)

    previous, current = tmp_path / "q1.xlsx", tmp_path / "q2.csv"
    table(PREV_AS_OF, 0).to_excel(previous, index=False)
    table(AS_OF, 1).to_csv(current, index=False)
    evaluated = tmp_path / "q2_eval.csv"
    assert tier_main(["eval", "credit", str(current), "-o", str(evaluated), "--explain"]) == 0
    out = tmp_path / "credit_report.xlsx"
    assert tier_main(["report", "--ruleset", "credit", "--current", str(evaluated), "--previous", str(previous),
                      "-o", str(out), "--group-by", "客户经理"]) == 0
    rows = sheet_rows(openpyxl.load_workbook(out, data_only=True), "迁移矩阵")
    matrix = read_matrix(rows)
    assert (matrix[("A", "B")], matrix[("C", "A")], matrix[("B", "B")], matrix[("B", "C")]) == (5, 2, 3, 1)
    assert (matrix[("A", rp.EXITED)], matrix[(rp.NEW, "C")], matrix[(rp.TOTAL, rp.TOTAL)]) == (1, 1, 13)
    figures = {r[0]: r[1] for r in rows if r and r[0] in ("上调", "下调", "不变")}
    assert figures == {"上调": 2, "下调": 6, "不变": 3}
    why = sheet_rows(openpyxl.load_workbook(out, data_only=True), "下调明细")
    reasons = [r[8] for r in why if isinstance(r[0], int)]
    assert len(reasons) == 6 and all(r.startswith(("CG-5b: total_score >= 60", "CG-5c: total_score < 60"))
                                     for r in reasons)


def test_evaluated_table_with_chinese_headers_is_not_re_evaluated() -> None:
    """A table filled by `tier fill` carries the outputs under their Chinese headers (客户等级, 下次拜访日期)."""
    raw = pd.DataFrame([["K1", "甲", "2024-06-30", "25000", "20", "否", "2024-06-10"],
                        ["K2", "乙", "2024-06-30", "3000", "70", "否", "2024-06-10"]],
                       columns=["客户编号", "客户名称", "评估日期", "月均销售额", "平均回款天数", "是否新客户", "最近拜访日期"])
    compiled = api.compile("credit")
    evaluated = api.evaluate(compiled, raw).rename(columns={o.key: o.zh for o in compiled.definition.outputs})
    evaluated.loc[1, "客户等级"] = "B"  # a reviewer's manual override must survive into the report
    report = rp.build_report_from_frames("credit", [list(evaluated.columns), *evaluated.to_numpy().tolist()])
    assert not report.current.evaluated_here and report.current.columns.tier == "客户等级"
    assert list(report.current.rows["tier"]) == ["A", "B"]
    assert report.by_tier.loc["B", "count"] == 1
    assert list(report.calendar["next_date"].dt.strftime("%Y-%m-%d")) == ["2024-07-10"]  # K2's 2024-12-10 is later
    assert report.later == 1


def test_cli_reports_unusable_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = tmp_path / "c.csv"
    pd.DataFrame({"客户编号": ["K1"], "月均销售额": ["1"]}).to_csv(current, index=False)
    code = tier_main(["report", "--ruleset", "credit", "--current", str(current), "-o", str(tmp_path / "r.xlsx"),
                      "--key", "没有这列"])
    assert code == 2
    assert "没有这列" in capsys.readouterr().err
    assert not (tmp_path / "r.xlsx").exists()


@pytest.mark.parametrize(("ruleset", "stem"), [("credit", "credit_customers"), ("guarantee", "guarantee_loans"),
                                             ("bank_layering", "bank_customers")])
def test_messy_example_tables_report(tmp_path: Path, ruleset: str, stem: str) -> None:
    """The shipped example tables (raw, messy, with ERROR rows): every row is accounted for."""
    source = Path(__file__).resolve().parent.parent / "workbook_templates" / "examples" / f"{stem}.xlsx"
    assert source.exists(), f"shipped example table {source.name} is missing"
    out = tmp_path / "r.xlsx"
    report = rp.build_report(ruleset, source, source, out)
    rows = report.current.rows
    moves = report.migration
    assert moves is not None and moves.unchanged == moves.comparable == int((rows["status"] == "OK").sum())
    assert moves.upgraded == moves.downgraded == moves.new == moves.exited == 0
    assert int(report.by_tier["count"].sum()) == len(rows)
    planned = report.calendar[report.calendar["status"] == "OK"]
    assert len(planned) + report.later == int((rows["status"] == "OK").sum())
    assert report.by_role["accounts"].sum() == int((rows["status"] == "OK").sum())
    assert openpyxl.load_workbook(out).sheetnames == list(rp.SHEETS)


# --------------------------------------------------------------------------- the file itself
def test_workbook_has_sheets_charts_and_print_setup(built) -> None:
    _report, path = built
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        charts = [n for n in names if n.startswith("xl/charts/chart") and n.endswith(".xml")]
        assert len(charts) >= 6
        assert any("<c:pieChart>" in archive.read(n).decode() for n in charts)
        assert any("<c:barChart>" in archive.read(n).decode() for n in charts)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == list(rp.SHEETS)
    for sheet in book.worksheets:
        assert sheet.page_setup.orientation == "landscape", sheet.title
        # one page wide (fitToWidth defaults to 1 when absent), as many pages tall as needed
        assert sheet.page_setup.fitToWidth in (None, 1) and sheet.page_setup.fitToHeight == 0, sheet.title
        assert sheet.sheet_properties.pageSetUpPr.fitToPage, sheet.title
        assert sheet.print_title_rows, sheet.title
    assert book["回访计划表"].freeze_panes == "C5"
    assert book["迁移矩阵"].conditional_formatting  # the heat map


def test_report_without_previous_quarter(tmp_path: Path, quarters) -> None:
    _prev, current, _truth = quarters
    report = rp.build_report("guarantee", current, None, tmp_path / "r.xlsx")
    assert report.migration is None
    book = openpyxl.load_workbook(tmp_path / "r.xlsx", data_only=True)
    assert "未提供上季数据" in str(sheet_rows(book, "迁移矩阵")[1][0])


def test_libreoffice_opens_the_report(built, tmp_path: Path) -> None:
    from engine.render import to_pdf

    if shutil.which("soffice") is None and shutil.which("libreoffice") is None:
        pytest.skip("LibreOffice (soffice) is not installed: apt-get install libreoffice-calc")
    _report, path = built
    pdf = to_pdf(path, tmp_path)
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed: the PDF was written but its pages are not checked")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = text.split("\f")
    footers = [[line.split()[0] for line in page.splitlines() if line.strip() and line.split()[0] in rp.SHEETS]
               for page in pages if page.strip()]
    assert all(footers)  # every page carries its sheet's name in the footer (&A) ...
    assert {found[-1] for found in footers} == set(rp.SHEETS)  # ... and every sheet is printed
    assert "G001" in text and "回访计划表" in text


# --------------------------------------------------------------------------- docs pictures
def render_docs(target: Path) -> list[Path]:
    """Build a realistic guarantee report (MOVES + 160 random loans); save the first page of each sheet."""
    from engine.render import to_pdf

    previous, current, _truth = guarantee_quarters(extra=160)
    work = target / "_build"
    work.mkdir(parents=True, exist_ok=True)
    try:
        book = work / "quarterly_report.xlsx"
        rp.build_report_from_frames("guarantee", current, previous, book, staff={"项目经理": 3, "风险管理部": 2})
        pdf = to_pdf(book, work)
        subprocess.run(["pdftoppm", "-png", "-r", "80", str(pdf), str(work / "page")], check=True)
        pages = sorted(work.glob("page-*.png"), key=lambda p: int(p.stem.split("-")[1]))
        names = {"汇总": "1-summary", "迁移矩阵": "2-migration", "下调明细": "3-downgrades",
                 "回访计划表": "4-visit-calendar", "工作量": "5-workload", "说明": "6-notes"}
        saved: list[Path] = []
        for number, page in enumerate(pages, start=1):
            text = subprocess.run(["pdftotext", "-f", str(number), "-l", str(number), "-layout", str(pdf), "-"],
                                  capture_output=True, text=True, check=True).stdout
            footer = [line.split()[0] for line in text.splitlines()
                      if line.strip() and line.split()[0] in names][-1]  # &A: the sheet name
            if footer in names and all(names[footer] not in s.name for s in saved):
                destination = target / f"{names[footer]}.png"
                shutil.copyfile(page, destination)
                saved.append(destination)
        return saved
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    for saved in render_docs(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report")):
        print(saved)

"""Realistic synthetic example data for the three core rulesets, as .xlsx and .csv (deterministic).

Why synthetic and messy: the README's main command (`tier eval` / `tier fill`) and the tests need
tables that look like what analysts really paste — Chinese company and person names, numbers
typed as text with thousands separators (`"12,000"`), percentages (`"75%"`), 是/否 and Y/N,
dates as text in three spellings, blanks — plus a few rows that must come out as ERROR (`abc`
in a number column, an end date before the start date, a future visit date, a count that
contradicts the last transaction date). Every value comes from one seeded `random.Random`, and the
workbooks carry fixed document properties, so a re-run gives identical files.

    python -m workbook_templates.make_examples            # writes workbook_templates/examples/
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import xlsxwriter

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
SEED = 20240630
AS_OF = dt.date(2024, 6, 30)
FIXED_TIME = dt.datetime(2024, 7, 1, 9, 0, 0)

_PLACES = ["华东", "江南", "中原", "华南", "西部", "北方", "东海", "滨江", "苏州", "杭州", "宁波", "无锡", "合肥", "成都",
           "武汉", "长沙", "青岛", "厦门", "佛山", "东莞", "嘉兴", "温州", "济南", "郑州"]
_WORDS = ["鑫达", "恒丰", "宏远", "金桥", "瑞祥", "华泰", "永盛", "德隆", "兴业", "天成", "润泽", "安达", "博远", "广源",
          "正泰", "明辉", "嘉禾", "海纳", "同创", "盛世", "新华", "利民", "远航", "中联"]
_TRADES = ["纸业", "包装", "物流", "电子", "化工", "食品", "建材", "机械", "纺织", "医药", "汽配", "家居", "印务", "塑胶",
           "新能源", "科技", "农业", "商贸"]
_FORMS = ["有限公司", "有限公司", "有限公司", "股份有限公司", "贸易有限公司", "实业有限公司"]
_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈")
_GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鑫宇浩然欣怡子涵梓萱一诺")
_BRANCHES = ["城东支行", "城西支行", "高新支行", "开发区支行", "滨江支行", "营业部"]


@dataclass(frozen=True)
class Example:
    """One example table: file stem, headers (zh, some with units), rows of raw cells."""

    stem: str
    ruleset: str
    headers: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]
    date_columns: frozenset[int]


def company(rng: random.Random) -> str:
    return rng.choice(_PLACES) + rng.choice(_WORDS) + rng.choice(_TRADES) + rng.choice(_FORMS)


def person(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2))))


def messy_date(rng: random.Random, day: dt.date) -> object:
    """A date as Excel would hold it (a date cell) or as someone typed it (text)."""
    roll = rng.random()
    if roll < 0.70:
        return day
    if roll < 0.82:
        return day.isoformat()
    if roll < 0.92:
        return f"{day.year}/{day.month}/{day.day}"
    return f"{day.year}年{day.month}月{day.day}日"


def messy_number(rng: random.Random, value: float, decimals: int = 0) -> object:
    roll = rng.random()
    number = round(value, decimals) if decimals else int(round(value))
    if roll < 0.80:
        return number
    if roll < 0.93:
        return f"{number:,.{decimals}f}" if decimals else f"{number:,}"
    return f" {number} "  # pasted with spaces around


def messy_bool(rng: random.Random, value: bool, blank_when_false: float = 0.0) -> object:
    if not value and rng.random() < blank_when_false:
        return None
    return rng.choice(["是", "是", "是", "Y"] if value else ["否", "否", "否", "N"])


def as_of_cell(rng: random.Random) -> object:
    return messy_date(rng, AS_OF)


# --------------------------------------------------------------------------- credit (CG)
def credit_rows(rng: random.Random, n: int = 300) -> list[tuple[object, ...]]:
    rows = []
    for index in range(1, n + 1):
        new = rng.random() < 0.15
        sales = rng.lognormvariate(9.6, 0.8)
        days = max(0.0, rng.gauss(38, 16))
        row: list[object] = [f"KH{index:04d}", company(rng), as_of_cell(rng), messy_number(rng, sales),
                             messy_number(rng, days, rng.choice((0, 0, 1))), messy_bool(rng, new, 0.6), None]
        if new and rng.random() < 0.6:
            row[4] = None  # a new customer without a collection history: default 45 days + note
        if rng.random() < 0.8:
            row[6] = messy_date(rng, AS_OF - dt.timedelta(days=rng.randint(3, 260)))
        rows.append(row)
    bad = {
        7: (3, "abc"), 23: (3, None), 41: (4, "约30天"), 58: (5, "不知道"), 77: (6, "2024-07-15"),
        96: (2, None), 118: (3, "2万"), 140: (4, "-5"), 166: (6, "2024-02-30"), 203: (3, "１２０００"),
        231: (4, None), 262: (2, "下月"),
    }
    for position, (column, value) in bad.items():
        if position < len(rows):
            rows[position][column] = value
            if position == 231:
                rows[position][5] = "否"  # an old customer without collection days: MISSING
    if len(rows) > 12:
        rows[12][3] = "20,000"  # exactly on the A threshold, typed with a separator
        rows[13][4] = "30.0"
    return [tuple(r) for r in rows]


# --------------------------------------------------------------------------- guarantee (GR)
def guarantee_rows(rng: random.Random, n: int = 240) -> list[tuple[object, ...]]:
    rows = []
    for index in range(1, n + 1):
        start = AS_OF - dt.timedelta(days=rng.randint(-20, 1000))
        end = start + dt.timedelta(days=rng.choice((365, 730, 1095)))
        overdue: object = None
        roll = rng.random()
        if roll < 0.10:
            overdue = rng.randint(1, 60)
        elif roll < 0.15:
            overdue = rng.randint(61, 420)
        elif roll < 0.45:
            overdue = 0
        ratio = rng.uniform(0.35, 0.86)
        revenue = rng.gauss(0.04, 0.18)
        coverage = rng.uniform(0.85, 2.2)
        row: list[object] = [
            f"DB{start.year}-{index:04d}", company(rng), as_of_cell(rng), messy_date(rng, start),
            messy_date(rng, end) if rng.random() < 0.92 else None, overdue,
            messy_bool(rng, rng.random() < 0.03, 0.7), messy_bool(rng, rng.random() < 0.05, 0.7),
            _fraction(rng, ratio), _fraction(rng, revenue), _fraction(rng, coverage),
            rng.choice([None, None, None, 0, 0, 0, 0, 0, 1, 1, 2]), None,
        ]
        if rng.random() < 0.85:
            last = max(start, AS_OF - dt.timedelta(days=rng.randint(0, 150)))
            if last <= AS_OF:
                row[12] = messy_date(rng, last)
        rows.append(row)
    bad = {
        5: (4, "2019-01-01"), 19: (5, "无"), 33: (8, "abc"), 47: (3, None), 61: (6, "不确定"), 88: (12, "2024-12-31"),
        102: (5, "2.5"), 130: (11, "-0.2"), 151: (2, None), 199: (10, "80%%"),
    }
    for position, (column, value) in bad.items():
        if position < len(rows):
            rows[position][column] = value
    return [tuple(r) for r in rows]


def _fraction(rng: random.Random, value: float) -> object:
    roll = rng.random()
    if roll < 0.12:
        return None  # optional indicator not collected: MISSING_OPTIONAL note, at best 正常
    if roll < 0.55:
        return round(value, 2)
    return f"{round(value * 100)}%"


# --------------------------------------------------------------------------- bank layering (BL)
def bank_rows(rng: random.Random, n: int = 400) -> list[tuple[object, ...]]:
    rows = []
    for index in range(1, n + 1):
        deposit = rng.lognormvariate(10.8, 1.6)
        wealth = rng.lognormvariate(11.5, 1.8) if rng.random() < 0.35 else None
        loan = rng.lognormvariate(13.3, 0.9) if rng.random() < 0.18 else None
        txn = rng.choice([0, 0, 1, 2, 3, 5, 8, 12, 20, 35]) if rng.random() < 0.9 else None
        if txn:
            last_txn = AS_OF - dt.timedelta(days=rng.randint(0, 89))
        else:
            last_txn = AS_OF - dt.timedelta(days=rng.randint(90, 900))
        row: list[object] = [
            f"6222{rng.randint(10**11, 10**12 - 1)}", person(rng), rng.choice(_BRANCHES), as_of_cell(rng),
            messy_number(rng, deposit, 2), None if wealth is None else messy_number(rng, wealth, 2),
            None if loan is None else messy_number(rng, loan, 2), txn,
            messy_date(rng, last_txn) if rng.random() < 0.9 else None,
            messy_date(rng, AS_OF - dt.timedelta(days=rng.randint(1, 400))) if rng.random() < 0.7 else None,
        ]
        rows.append(row)
    if len(rows) > 40:
        rows[3][4], rows[3][5] = 6_000_000, None  # exactly 私人银行
        rows[8][4], rows[8][5], rows[8][6] = 30_000, 15_000.5, "1,000,000"  # 低→中 loan uplift
    bad = {
        11: ((4, None), (5, None), (6, None)), 29: ((4, "-100"),), 57: ((7, 5), (8, "2023-01-05")),
        83: ((7, 0), (8, "2024-06-20")), 121: ((9, "2024-08-01"),), 160: ((3, None),), 222: ((5, "50万"),),
        300: ((7, "3.5"),),
    }
    for position, changes in bad.items():
        if position < len(rows):
            for column, value in changes:
                rows[position][column] = value
    return [tuple(r) for r in rows]


# --------------------------------------------------------------------------- writing
def examples(seed: int = SEED) -> list[Example]:
    """The three example tables (same seed → same rows)."""
    rng = random.Random(seed)
    return [
        Example("credit_customers", "credit",
                ("客户编号", "客户名称", "评估日期", "月均销售额(元)", "平均回款天数(天)", "是否新客户", "最近拜访日期"),
                tuple(credit_rows(rng)), frozenset({2, 6})),
        Example("guarantee_loans", "guarantee",
                ("担保业务编号", "被担保人名称", "分类基准日", "担保起始日(放款日)", "担保到期日(主债务到期日)",
                 "主债务逾期天数(天)", "是否已代偿", "重大风险事件", "资产负债率", "销售收入同比变动", "反担保覆盖率",
                 "其他一般预警信号数(个)", "最近回访日期"),
                tuple(guarantee_rows(rng)), frozenset({2, 3, 4, 12})),
        Example("bank_customers", "bank_layering",
                ("客户号", "客户姓名", "所属支行", "评估日期", "存款月日均余额(元)", "理财/基金/保险等代销产品月日均余额(元)",
                 "贷款余额(元)", "近90天客户主动交易笔数(笔)", "最近一次客户主动交易日期", "最近联系/拜访日期"),
                tuple(bank_rows(rng)), frozenset({3, 8, 9})),
    ]


def csv_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(example: Example, path: Path) -> None:
    """UTF-8 with BOM (Excel shows the Chinese headers), CRLF like Excel's own CSV."""
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(example.headers)
        for row in example.rows:
            writer.writerow([csv_text(v) for v in row])


def write_xlsx(example: Example, path: Path, sheet_name: str = "数据") -> None:
    """An Excel table with typed cells where Excel would type them and text where people typed text."""
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False,
                                           "strings_to_urls": False})
    book.set_properties({"title": f"tierbook 示例数据 ({example.ruleset})", "author": "tierbook",
                         "company": "tierbook", "created": FIXED_TIME})
    sheet = book.add_worksheet(sheet_name)
    date_format = book.add_format({"num_format": "yyyy-mm-dd"})
    number_format = book.add_format({"num_format": "#,##0.##"})
    for r, row in enumerate(example.rows, start=1):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, dt.date):
                sheet.write_datetime(r, c, dt.datetime.combine(value, dt.time()), date_format)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                sheet.write_number(r, c, value, number_format if abs(value) >= 1000 else None)
            else:
                sheet.write_string(r, c, str(value))
    sheet.add_table(0, 0, len(example.rows), len(example.headers) - 1,
                    {"name": f"{example.stem}", "style": "Table Style Light 9",
                     "columns": [{"header": h} for h in example.headers]})
    for c, header in enumerate(example.headers):
        sheet.set_column(c, c, max(11, min(28, len(header) * 2 + 2)), date_format if c in example.date_columns else None)
    sheet.freeze_panes(1, 0)
    sheet.set_landscape()
    sheet.set_paper(8)  # A3, one page wide: the filled table has two dozen columns
    sheet.fit_to_pages(1, 0)
    sheet.repeat_rows(0)
    book.close()


def write_all(folder: Path = EXAMPLES, seed: int = SEED) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for example in examples(seed):
        for suffix, writer in ((".xlsx", write_xlsx), (".csv", write_csv)):
            path = folder / f"{example.stem}{suffix}"
            writer(example, path)  # type: ignore[operator]
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the example tables (deterministic)")
    parser.add_argument("--out", type=Path, default=EXAMPLES)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    for path in write_all(args.out, args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

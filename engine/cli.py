"""The `tier` command (PRODUCT.md §5): list, eval, check, test.

Unusable input (missing file, unknown ruleset, unreadable sheet, bad parameter) exits with status 2
and one line on stderr — never a traceback (set TIERBOOK_DEBUG=1 to see one). A run in which some
rows are ERROR still exits 0: those rows carry their codes in the output.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Sequence

from engine import api
from engine import outputs as out
from engine.compile import render_param
from engine.errors import Problem, TierError
from engine.ruleset import available_rulesets, read_ruleset

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE, EXIT_INTERNAL = 0, 1, 2, 3


def _params(pairs: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise TierError(f"--param 需要 KEY=VALUE / --param expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def _rete_reason() -> str | None:
    """Why the rete engine cannot run here, or None."""
    try:
        from engine.rete import rete_available
    except ImportError as exc:  # the wrapper itself is missing: a broken install
        return f"rete engine unavailable: {exc}"
    return rete_available()


def cmd_list(args: argparse.Namespace) -> int:
    if args.params:
        definition = api.load_ruleset(args.params)
        for param in definition.parameters:
            label = param.zh or param.en
            print(f"{param.key}\t{param.type}\t{render_param(api.compile(definition).params[param.key])}\t{label}")
        return EXIT_OK
    rows = []
    for rid, path in sorted(available_rulesets().items()):
        definition, problems = read_ruleset(path)
        if definition is None:
            rows.append({"id": rid, "version": "?", "title": f"(cannot load: {problems[0].message})"})
            continue
        title = " / ".join(t for t in (definition.title.zh, definition.title.en) if t)
        rows.append({"id": definition.id, "version": definition.version, "title": title, "path": str(path)})
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return EXIT_OK
    width = max((len(r["id"]) for r in rows), default=2)
    print(f"{'id'.ljust(width)}  version  title")
    for row in rows:
        print(f"{row['id'].ljust(width)}  {row['version'].ljust(7)}  {row['title']}")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from engine import io as tio
    from engine.rows import alias_index

    started = time.perf_counter()
    tio.refuse_overwriting_input(args.output, args.input)  # never replace the analyst's data by results
    compiled = api.compile(args.ruleset, _params(args.param))
    if args.engine == "rete":
        reason = _rete_reason()
        if reason:
            raise TierError(reason)
    if args.engine == "dask" or _streams(args):  # issue 8: large files in chunks, or on Dask
        return _eval_chunked(args, compiled, started)
    frame = tio.read_table(args.input, sheet=args.sheet, known_headers=set(alias_index(compiled.definition)))
    with _naming_the_file(args.input):
        result = api.evaluate(compiled, frame, engine=args.engine, explain=args.explain,
                              sheet=frame.attrs.get("sheet", args.sheet or ""))
    text = out.render_frame(result, compiled)
    tio.write_table(result, text, args.output)
    counts = result["status"].value_counts().to_dict()
    changed = ", ".join(f"{k}={render_param(v)}" for k, v in compiled.overridden.items()) or "defaults"
    print(f"{len(result)} rows → {args.output}: OK {counts.get('OK', 0)}, ERROR {counts.get('ERROR', 0)} "
          f"(ruleset {compiled.id} {compiled.version}, engine {args.engine}, parameters: {changed}, "
          f"{time.perf_counter() - started:.2f}s)", file=sys.stderr)
    return EXIT_OK


@contextlib.contextmanager
def _naming_the_file(path: str | os.PathLike) -> Iterator[None]:
    """Header errors raised on a DataFrame name the file they came from, as the readers' errors do."""
    from engine.rows import HeaderError

    try:
        yield
    except HeaderError as exc:
        if exc.source:
            raise
        raise exc.located(Path(path).name) from exc


def _streams(args: argparse.Namespace) -> bool:
    from engine.stream import should_stream

    return args.engine in ("vector", "rete") and should_stream(args.input, args.output, args.chunk_rows)


def _eval_chunked(args: argparse.Namespace, compiled, started: float) -> int:
    """`tier eval` on a .csv/.parquet file chunk by chunk (engine.stream) or on Dask (engine.distributed)."""
    if args.engine == "dask":
        from engine.distributed import evaluate_file_dask

        with _naming_the_file(args.input):
            report = evaluate_file_dask(compiled.definition, args.input, args.output, params=_params(args.param),
                                        explain=args.explain)
    else:
        from engine.stream import evaluate_file

        with _naming_the_file(args.input):
            report = evaluate_file(compiled, args.input, args.output, engine=args.engine, explain=args.explain,
                                   chunk_rows=args.chunk_rows, progress=True)
    changed = ", ".join(f"{k}={render_param(v)}" for k, v in compiled.overridden.items()) or "defaults"
    print(f"{report.rows} rows → {args.output}: OK {report.ok}, ERROR {report.error} "
          f"(ruleset {compiled.id} {compiled.version}, engine {args.engine}, parameters: {changed}, "
          f"{report.chunks} chunk(s), {time.perf_counter() - started:.2f}s)", file=sys.stderr)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from engine.bench import main as bench_main

    return bench_main(args)


def cmd_check(args: argparse.Namespace) -> int:
    problems: list[Problem] = api.check_ruleset(args.ruleset)
    for problem in problems:
        print(problem.format())
    errors = [p for p in problems if p.severity == "error"]
    warnings = len(problems) - len(errors)
    print(f"{len(errors)} error(s), {warnings} warning(s)", file=sys.stderr)
    return EXIT_FAILED if errors or (args.strict and problems) else EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    from engine.examples import run_examples

    engines = tuple(args.engine) if args.engine else ("vector",) + (() if _rete_reason() else ("rete",))
    ids = [args.ruleset] if args.ruleset else sorted(available_rulesets())
    failed = passed = 0
    for rid in ids:
        definition = api.load_ruleset(rid)
        for result in run_examples(definition, engines):
            if result.ok:
                passed += 1
                if args.verbose:
                    print(result.describe())
            else:
                failed += 1
                print(result.describe())
    print(f"{passed} passed, {failed} failed")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_fill(args: argparse.Namespace) -> int:
    from engine.fill import fill_workbook

    report = fill_workbook(args.workbook, args.ruleset, sheet=args.sheet, output=args.output,
                           params=_params(args.param), values=args.values, engine=args.engine,
                           sheet_params=args.sheet_params)
    print(report.summary(), file=sys.stderr)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from engine import io as tio
    from engine.report import ReportOptions, build_report

    tio.refuse_overwriting_input(args.output, args.current, args.previous)
    staff = {role: int(count) for role, count in _params(args.staff).items()}
    options = ReportOptions(key=args.key, group_by=args.group_by, owner=args.owner, balances=tuple(args.balance),
                            capacity_days=args.capacity_days, calendar_by=args.by, staff=staff,
                            tier_order=tuple(args.tier_order.split(",")) if args.tier_order else None)
    report = build_report(args.ruleset, args.current, args.previous, args.output, params=_params(args.param),
                          sheet=args.sheet, previous_sheet=args.previous_sheet, options=options)
    moves = report.migration
    print(f"{args.output}: {len(report.current.rows)} rows, as of {report.as_of}"
          + (f"; up {moves.upgraded}, down {moves.downgraded}, new {moves.new}, exited {moves.exited}" if moves else "")
          + f"; {len(report.calendar)} visits planned", file=sys.stderr)
    for warning in report.warnings:
        print(f"  {warning}", file=sys.stderr)
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from engine.render import render_workbook

    for page in render_workbook(args.workbook, args.output, dpi=args.dpi):
        print(page)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tier", description="tierbook: grade rows by rulesets / 按规则分级")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list rulesets (id, version, title)")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_list.add_argument("--params", metavar="RULESET", help="list the parameters of one ruleset with defaults")
    p_list.set_defaults(func=cmd_list)

    p_eval = sub.add_parser("eval", help="evaluate a table file (.csv/.xlsx/.parquet)")
    p_eval.add_argument("ruleset", help="ruleset id or path to a .yaml file")
    p_eval.add_argument("input", help="input .csv, .xlsx or .parquet")
    p_eval.add_argument("-o", "--output", required=True, help="output .csv, .xlsx or .parquet")
    p_eval.add_argument("--sheet", help="sheet name for .xlsx input (default: the first sheet)")
    p_eval.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    p_eval.add_argument("--engine", choices=["vector", "rete", "dask"], default="vector",
                        help="dask: partitions in parallel on a local Dask scheduler (pip install dask)")
    p_eval.add_argument("--explain", action="store_true", help="add a fired_rules column")
    p_eval.add_argument("--chunk-rows", type=int, metavar="N",
                        help="evaluate .csv/.parquet in chunks of N rows (Parquet input always streams)")
    p_eval.set_defaults(func=cmd_eval)

    from engine.bench import add_arguments as add_bench_arguments

    p_bench = sub.add_parser("bench", help="rows/s per engine × core ruleset × size, against a numpy baseline")
    add_bench_arguments(p_bench)
    p_bench.set_defaults(func=cmd_bench)

    p_check = sub.add_parser("check", help="static analysis of a ruleset")
    p_check.add_argument("ruleset")
    p_check.add_argument("--strict", action="store_true", help="fail on warnings too")
    p_check.set_defaults(func=cmd_check)

    p_test = sub.add_parser("test", help="run the examples embedded in rulesets")
    p_test.add_argument("ruleset", nargs="?")
    p_test.add_argument("--engine", action="append", choices=["vector", "rete", "scalar"])
    p_test.add_argument("-v", "--verbose", action="store_true")
    p_test.set_defaults(func=cmd_test)

    p_fill = sub.add_parser("fill", help="fill the output columns of a workbook's table in place (.xlsx/.xlsm)")
    p_fill.add_argument("workbook", help=".xlsx or .xlsm workbook whose table has the ruleset's input headers")
    p_fill.add_argument("--ruleset", "-r", help="ruleset id or path to a .yaml file (default: the 规则集 row of the "
                                                "workbook's 参数 sheet)")
    p_fill.add_argument("--sheet", help="sheet holding the table (default: the first sheet that has one)")
    p_fill.add_argument("-o", "--output", help="write a new workbook instead of replacing WORKBOOK")
    p_fill.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter (beats the workbook's 参数 sheet); as_of_date=YYYY-MM-DD fills "
                             "blank as_of_date cells for the evaluation")
    p_fill.add_argument("--no-sheet-params", dest="sheet_params", action="store_false",
                        help="ignore the workbook's 参数 / Parameters sheet")
    p_fill.add_argument("--values", action="store_true", help="overwrite output cells that hold formulas")
    p_fill.add_argument("--engine", choices=["vector", "rete"], default="vector")
    p_fill.set_defaults(func=cmd_fill)

    p_report = sub.add_parser("report", help="quarterly tier report workbook (distribution, migration, visits, workload)")
    p_report.add_argument("--ruleset", "-r", required=True, help="ruleset id or path to a .yaml file")
    p_report.add_argument("--current", required=True, help="this quarter's table, raw or evaluated (.csv/.xlsx/.parquet)")
    p_report.add_argument("--previous", help="last quarter's table, raw or evaluated (for the migration matrix)")
    p_report.add_argument("-o", "--output", required=True, help="report .xlsx")
    p_report.add_argument("--key", help="column matching rows across quarters (default: the first text input)")
    p_report.add_argument("--group-by", help="column to break the distribution down by (branch, owner, ...)")
    p_report.add_argument("--owner", help="column naming the person who owns each row (workload per person)")
    p_report.add_argument("--balance", action="append", default=[], metavar="COLUMN", help="balance/amount column")
    p_report.add_argument("--capacity-days", type=float, default=20.0, help="working days per person per month")
    p_report.add_argument("--staff", action="append", default=[], metavar="ROLE=N", help="headcount of an owner role")
    p_report.add_argument("--tier-order", help="tiers best to worst, comma-separated (default: from the ruleset)")
    p_report.add_argument("--by", choices=["week", "month"], default="week", help="visit calendar grouping")
    p_report.add_argument("--sheet", help="sheet of the current table (.xlsx)")
    p_report.add_argument("--previous-sheet", help="sheet of the previous table (.xlsx)")
    p_report.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    p_report.set_defaults(func=cmd_report)

    p_render = sub.add_parser("render", help="render a workbook to PNG pages (needs LibreOffice + poppler)")
    p_render.add_argument("workbook")
    p_render.add_argument("-o", "--output", required=True, help="folder for the PNG pages")
    p_render.add_argument("--dpi", type=int, default=110)
    p_render.set_defaults(func=cmd_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TierError as exc:
        print(f"tier: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        if isinstance(exc, TierError) and "\n" in str(exc):
            for line in str(exc).splitlines()[1:]:
                print(f"  {line}", file=sys.stderr)
        return EXIT_UNUSABLE
    except (OSError, ValueError, KeyError) as exc:
        if os.environ.get("TIERBOOK_DEBUG"):
            raise
        print(f"tier: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except Exception as exc:  # a bug of ours: still one line for the analyst, the traceback on request
        if os.environ.get("TIERBOOK_DEBUG"):
            raise
        print(f"tier: 内部错误 / internal error {type(exc).__name__}: {exc} "
              f"(rerun with TIERBOOK_DEBUG=1 for details and report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

"""Every error tierbook raises, and the `Problem` records that checks collect.

The tree (one root, shallow, never a builtin name)::

    TierError                      any failure the user can act on
    ├── RulesetError               a ruleset file that cannot be loaded or compiled
    │   ├── ExpressionError        an expression that does not parse or type-check
    │   └── ParameterError         an unknown parameter or a value of the wrong type
    ├── InputError                 an input file / table the engine cannot read
    └── RuleEngineUnavailable      the rete engine's durable-rules cannot be imported

Row-level problems (a bad cell) are *not* exceptions: they become error codes in the row's
`errors` output, so one bad row never stops the others (RULESETS §0.4).
"""
from __future__ import annotations

from dataclasses import dataclass


class TierError(Exception):
    """Root of every error tierbook raises on purpose."""


class RulesetError(TierError):
    """A ruleset that cannot be loaded, checked or compiled."""

    def __init__(self, message: str, problems: "list[Problem] | None" = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class ExpressionError(RulesetError):
    """An expression that does not parse or type-check; `position` is a character offset."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class ParameterError(RulesetError):
    """An unknown parameter name or a value that does not fit the parameter's type."""


class InputError(TierError):
    """An input file or table that cannot be read (missing, unreadable, wrong headers)."""


class RuleEngineUnavailable(TierError):
    """The rete engine cannot run here (durable-rules missing or not importable)."""


@dataclass(frozen=True)
class Problem:
    """One finding of a static check: where it is, what is wrong, how to fix it."""

    file: str
    line: int | None
    code: str  # e.g. 'unknown-name', 'gap', 'overlap', 'cycle', 'type'
    message: str
    fix: str = ""
    severity: str = "error"  # 'error' | 'warning'

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.severity} [{self.code}] {self.message}"
        return f"{text} — fix: {self.fix}" if self.fix else text

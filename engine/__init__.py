"""tierbook engine: rulesets as data, evaluated by a vector engine or a rete (durable-rules) engine.

The public API; everything else is internal. `engine` never imports xlwings (only `addin/` does).
"""
from __future__ import annotations

from engine.api import ENGINES, check_ruleset, compile, evaluate, load_ruleset
from engine.errors import (ExpressionError, InputError, ParameterError, Problem, RuleEngineUnavailable,
                           RulesetError, TierError)
from engine.ruleset import available_rulesets

__all__ = [
    "ENGINES", "available_rulesets", "check_ruleset", "compile", "evaluate", "load_ruleset",
    "ExpressionError", "InputError", "ParameterError", "Problem", "RuleEngineUnavailable", "RulesetError",
    "TierError",
]
__version__ = "0.1.0"

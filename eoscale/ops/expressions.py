"""``band_math``: a numpy-like expression over the bands of a step's inputs, checked with ``ast``.

The expression is never given to ``eval``: it is parsed, every node is checked against a small
grammar (numbers, input names, ``name[band]``, arithmetic, comparisons, the logical operators
``& | ^ ~`` and calls of the functions in :data:`FUNCTIONS`), and the checked tree is evaluated
with numpy on float64 copies of the bands it uses.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from eoscale.errors import ConfigError
from eoscale.ops._common import Params, convert, declare, default_nodata, nodata_of, valid_mask

OP = "band_math"

#: Functions an expression may call, with the number of arguments each takes.
FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "abs": (np.abs, 1), "sqrt": (np.sqrt, 1), "exp": (np.exp, 1), "expm1": (np.expm1, 1),
    "log": (np.log, 1), "log10": (np.log10, 1), "log2": (np.log2, 1), "log1p": (np.log1p, 1),
    "sin": (np.sin, 1), "cos": (np.cos, 1), "tan": (np.tan, 1), "arcsin": (np.arcsin, 1),
    "arccos": (np.arccos, 1), "arctan": (np.arctan, 1), "arctan2": (np.arctan2, 2),
    "hypot": (np.hypot, 2), "deg2rad": (np.deg2rad, 1), "rad2deg": (np.rad2deg, 1),
    "floor": (np.floor, 1), "ceil": (np.ceil, 1), "round": (np.rint, 1), "sign": (np.sign, 1),
    "minimum": (np.minimum, 2), "maximum": (np.maximum, 2), "clip": (np.clip, 3),
    "where": (np.where, 3), "isnan": (np.isnan, 1), "isfinite": (np.isfinite, 1),
    "power": (np.power, 2),
}
#: Named constants an expression may use.
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_BINARY: dict[type, Callable[..., Any]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide, ast.Mod: np.mod, ast.Pow: np.power,
    ast.BitAnd: np.logical_and, ast.BitOr: np.logical_or, ast.BitXor: np.logical_xor,
}
_UNARY: dict[type, Callable[..., Any]] = {ast.USub: np.negative, ast.UAdd: np.positive,
                                          ast.Invert: np.logical_not}
_COMPARE: dict[type, Callable[..., Any]] = {
    ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
    ast.Eq: np.equal, ast.NotEq: np.not_equal,
}
_REFUSED: dict[type, str] = {
    ast.Attribute: "attribute access is not allowed", ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed", ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.IfExp: "'a if c else b' is not allowed (use where(c, a, b))",
    ast.BoolOp: "'and' and 'or' are not allowed (use & and |)",
    ast.NamedExpr: "assignments are not allowed", ast.Starred: "unpacking is not allowed",
}

Band = tuple[int, int]
"""An input's index and a band's 0-based index in it."""


@dataclass(frozen=True)
class Expression:
    """A checked expression: its tree, and the band each name or ``name[band]`` node means."""

    tree: ast.Expression
    bands: Mapping[int, Band]


def _where(node: ast.AST, multiline: bool) -> str:
    column = f"column {getattr(node, 'col_offset', 0) + 1}"
    return f"line {getattr(node, 'lineno', 1)}, {column}" if multiline else column


def _check(expression: str, names: Sequence[str],
           counts: Sequence[int] | None) -> tuple[Expression | None, list[str]]:
    """Parse and check; ``counts`` (bands per input), when known, also checks band numbers."""
    if not isinstance(expression, str) or not expression.strip():
        return None, [f"the expression must be a non-empty string, not {expression!r}"]
    multiline = "\n" in expression.strip()
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as error:
        line = error.lineno or 1
        column = error.offset or len(expression.splitlines()[line - 1]) + 1
        where = f"line {line}, column {column}" if multiline else f"column {column}"
        return None, [f"{where}: {error.msg}"]
    inputs = {name: index for index, name in enumerate(names)}
    problems: list[str] = []
    bands: dict[int, Band] = {}

    def refuse(node: ast.AST, message: str) -> None:
        problems.append(f"{_where(node, multiline)}: {message}")

    def band(node: ast.AST, name: str, number: int | None) -> None:
        index = inputs[name]
        count = None if counts is None else counts[index]
        if number is None and count is not None and count != 1:
            refuse(node, f"'{name}' has {count} bands; pick one with {name}[1] .. {name}[{count}]")
        elif number is not None and count is not None and number > count:
            refuse(node, f"'{name}' has {count} band{'s' if count > 1 else ''}, no band {number}")
        else:
            bands[id(node)] = (index, 0 if number is None else number - 1)

    def name(node: ast.Name) -> None:
        if node.id in inputs:
            band(node, node.id, None)
        elif node.id in FUNCTIONS:
            refuse(node, f"function '{node.id}' must be called")
        elif node.id not in CONSTANTS:
            known = [*names, *CONSTANTS]
            close = difflib.get_close_matches(node.id, known, n=1)
            hint = (f"did you mean '{close[0]}'?" if close
                    else f"inputs: {', '.join(names) or 'none'}")
            refuse(node, f"unknown name '{node.id}' ({hint})")

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                refuse(node, f"only numbers are allowed as constants, not {node.value!r}")
            elif isinstance(node.value, int) and node.value.bit_length() > 1023:
                refuse(node, "the number is too large")
        elif isinstance(node, ast.Name):
            name(node)
        elif isinstance(node, ast.Subscript):
            subscript(node)
        elif isinstance(node, ast.Call):
            call(node)
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            visit(node.left)
            visit(node.right)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            visit(node.operand)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for operand in (node.left, *node.comparators):
                visit(operand)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            refuse(node, "'not' is not allowed (use ~)")
        else:
            refuse(node, _REFUSED.get(type(node), f"'{ast.unparse(node)}' is not allowed"))

    def subscript(node: ast.Subscript) -> None:
        index = node.slice
        if not (isinstance(node.value, ast.Name) and node.value.id in inputs):
            refuse(node, "only an input can be indexed, as name[band]")
        elif not (isinstance(index, ast.Constant) and isinstance(index.value, int)
                  and not isinstance(index.value, bool) and index.value >= 1):
            refuse(index, f"a band is a whole number from 1, as {node.value.id}[1]")
        else:
            band(node, node.value.id, index.value)

    def call(node: ast.Call) -> None:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            callee = ast.unparse(node.func)
            refuse(node, f"cannot call '{callee}' (functions: {', '.join(FUNCTIONS)})")
            return
        arity = FUNCTIONS[node.func.id][1]
        if node.keywords:
            refuse(node.keywords[0], "keyword arguments are not allowed")
        elif len(node.args) != arity:
            refuse(node, f"{node.func.id}() takes {arity} argument{'s' if arity > 1 else ''}, "
                         f"got {len(node.args)}")
        for argument in node.args:
            visit(argument)

    visit(tree.body)
    return (None if problems else Expression(tree, bands)), problems


def check_expression(expression: str, names: Sequence[str]) -> list[str]:
    """Problems with a band_math expression over inputs ``names``, each with its column; [] if none.

    Band numbers are checked against the inputs' band counts only at run time.
    """
    return _check(expression, names, None)[1]


@lru_cache(maxsize=64)
def _compiled(expression: str, names: tuple[str, ...], counts: tuple[int, ...]) -> Expression:
    checked, problems = _check(expression, names, counts)
    if checked is None:
        raise ConfigError(f"{OP}: invalid expression {expression!r}: " + "; ".join(problems))
    return checked


def _evaluate(checked: Expression, bands: Mapping[Band, np.ndarray]) -> Any:
    """The expression's value, with numpy, from the float64 bands it uses."""

    def value(node: ast.AST) -> Any:
        if id(node) in checked.bands:
            return bands[checked.bands[id(node)]]
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)  # so that no integer arithmetic can wrap around
        if isinstance(node, ast.Name):
            return CONSTANTS[node.id]
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](value(node.operand))
        if isinstance(node, ast.Compare):
            operands = [value(operand) for operand in (node.left, *node.comparators)]
            results = [_COMPARE[type(op)](left, right)
                       for op, left, right in zip(node.ops, operands, operands[1:])]
            return np.logical_and.reduce(results) if len(results) > 1 else results[0]
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id][0](*(value(argument) for argument in node.args))

    return value(checked.tree.body)


def _names(params: Mapping[str, Any]) -> tuple[str, ...]:
    names = params.get("names", params.get("_inputs"))
    if (not isinstance(names, (list, tuple)) or not names or len(set(names)) != len(names)
            or not all(isinstance(name, str) for name in names)):
        raise ConfigError(f"{OP}: param 'names' (or the runner's '_inputs') must list the distinct "
                          f"names of the inputs, not {names!r}")
    return tuple(names)


@dataclass(frozen=True)
class _Settings:
    expression: str
    names: tuple[str, ...]
    dtype: np.dtype
    nodata: float


def _settings(params: Mapping[str, Any]) -> _Settings:
    p = Params(OP, params, ("expression", "dtype", "nodata", "names"))
    dtype = p.dtype("dtype", "float32")
    nodata = p.nodata("nodata", dtype)
    expression = p.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise p.error("expression", "a non-empty string", expression)
    nodata = default_nodata(dtype) if nodata is None else nodata
    return _Settings(expression, _names(params), dtype, nodata)


def _profile(profiles: Sequence[dict], params: Mapping[str, Any]) -> dict:
    settings = _settings(params)
    _compiled(settings.expression, settings.names, tuple(int(p["count"]) for p in profiles))
    return {**profiles[0], "dtype": settings.dtype.name, "count": 1, "nodata": settings.nodata}


def _check_params(params: Mapping[str, Any], input_names: Sequence[str]) -> list[str]:
    """What ``eoscale validate`` reports about a band_math step's params."""
    expression = params.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        return [f"{OP}: param 'expression' must be a non-empty string"]
    names = params.get("names") or list(input_names)
    return [f"{OP}: expression {expression!r}: {problem}"
            for problem in check_expression(expression, names)]


@declare(margin=0, profile=_profile, wants_input_names=True, check=_check_params)
def band_math(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
              params: Mapping[str, Any]) -> np.ndarray:
    """Evaluate ``params["expression"]`` over the inputs' bands, one output band.

    Names are the inputs' names in order: ``params["names"]`` when given by hand, else the
    ``params["_inputs"]`` the pipeline runner adds. ``name[k]`` is band ``k`` (1-based); a bare
    name is the band of a one-band input. The result is nodata wherever a band the expression
    uses is nodata, and wherever it is not finite (a division by zero); integer dtypes are
    rounded to nearest and must hold every value.
    """
    settings = _settings(params)
    if len(arrays) != len(settings.names):
        raise ConfigError(f"{OP}: {len(settings.names)} input names for {len(arrays)} inputs")
    checked = _compiled(settings.expression, settings.names, tuple(a.shape[0] for a in arrays))
    shape = arrays[0].shape[1:]
    valid = np.ones(shape, dtype=bool)
    bands: dict[Band, np.ndarray] = {}
    for index, number in set(checked.bands.values()):
        band = arrays[index][number]
        valid &= valid_mask(band, nodata_of(profiles[index]))
        bands[index, number] = band.astype(np.float64)
    with np.errstate(all="ignore"):
        result = np.broadcast_to(np.asarray(_evaluate(checked, bands), dtype=np.float64), shape)
        valid &= np.isfinite(result)
    return convert(OP, result, valid, settings.dtype, settings.nodata, False,
                   "choose a wider param 'dtype'")

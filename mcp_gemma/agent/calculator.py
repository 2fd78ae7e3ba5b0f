"""A calculator that evaluates arithmetic by walking the AST: no names, attributes or strings.

Every operation is bounded before it runs, so ``9**9**9`` or ``10**10**6 * 7`` is refused
instead of eating the CPU or memory of the server.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from pydantic import BaseModel, Field

from mcp_gemma.errors import InvalidInputError

MAX_EXPRESSION_CHARS = 500
MAX_NODES = 200
MAX_INT_BITS = 4096  # ~1,233 decimal digits
MAX_FACTORIAL = 500

Number = int | float

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}


def _factorial(n: Number) -> int:
    if isinstance(n, float):
        if not n.is_integer():
            raise InvalidInputError("factorial needs a whole number")
        n = int(n)
    if not 0 <= n <= MAX_FACTORIAL:
        raise InvalidInputError(f"factorial takes 0..{MAX_FACTORIAL}")
    return math.factorial(n)


def _round(value: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(value)
    if not isinstance(ndigits, int) or abs(ndigits) > 100:
        raise InvalidInputError("round takes a whole number of digits between -100 and 100")
    return round(value, ndigits)


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "hypot": math.hypot,
    "degrees": math.degrees,
    "radians": math.radians,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": _factorial,
}

BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculatorResult(BaseModel):
    """The value of an arithmetic expression."""

    expression: str = Field(description="The expression as given.")
    result: int | float = Field(description="Its value.")


def _bits(value: Number) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _check_size(value: Number) -> Number:
    if isinstance(value, int) and _bits(value) > MAX_INT_BITS:
        raise InvalidInputError(
            f"the result has more than {MAX_INT_BITS} bits; numbers are capped at ~1,200 digits"
        )
    return value


def _power(base: Number, exp: Number) -> Number:
    # bits(base**exp) ≈ exp * log2(base): refuse before computing it.
    big_int = isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1
    if big_int and (exp > MAX_INT_BITS or (abs(int(base)).bit_length() - 1) * exp > MAX_INT_BITS):
        raise InvalidInputError(
            f"{base}**{exp} is too large; results are capped at {MAX_INT_BITS} bits (~1,200 digits)"
        )
    if (isinstance(exp, float) or isinstance(base, float)) and abs(exp) > 10_000:
        raise InvalidInputError(f"exponent {exp} is out of range (|exponent| ≤ 10000)")
    value: Number = operator.pow(base, exp)
    return value


def _binary(op: ast.operator, left: Number, right: Number) -> Number:
    kind = type(op)
    if kind not in BINARY:
        raise InvalidInputError(f"operator {kind.__name__} is not supported; use + - * / // % **")
    if kind is ast.Pow:
        return _power(left, right)
    int_product = kind is ast.Mult and isinstance(left, int) and isinstance(right, int)
    if int_product and _bits(left) + _bits(right) > MAX_INT_BITS + 1:
        raise InvalidInputError(f"the product is too large; results are capped at {MAX_INT_BITS} bits")
    try:
        return BINARY[kind](left, right)
    except ZeroDivisionError:
        raise InvalidInputError("division by zero") from None


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise InvalidInputError(
                f"only numbers are allowed, not {type(node.value).__name__} {node.value!r}"
            )
        return node.value
    if isinstance(node, ast.BinOp):
        return _check_size(_binary(node.op, _eval(node.left), _eval(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise InvalidInputError(f"unknown name {node.id!r}; known constants: {', '.join(CONSTANTS)}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise InvalidInputError(f"unknown function; available: {', '.join(FUNCTIONS)}")
        if node.keywords or len(node.args) > 8:
            raise InvalidInputError("functions take up to 8 positional arguments and no keywords")
        args = [_eval(arg) for arg in node.args]
        try:
            return _check_size(FUNCTIONS[node.func.id](*args))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{node.func.id}: {exc}") from None
    raise InvalidInputError(
        f"{type(node).__name__} is not allowed; use numbers, + - * / // % **, parentheses, "
        "constants and math functions"
    )


def calculate(expression: str) -> CalculatorResult:
    """Evaluate ``expression`` safely; raise :class:`InvalidInputError` with the reason when refused."""
    text = expression.strip()
    if not text:
        raise InvalidInputError("the expression is empty")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise InvalidInputError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    text = text.replace("^", "**")  # small models write powers as ^
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise InvalidInputError(
            f"cannot parse {expression!r}: {exc.msg if isinstance(exc, SyntaxError) else exc}"
        ) from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise InvalidInputError(f"the expression has more than {MAX_NODES} parts")
    try:
        value = _eval(tree)
    except OverflowError:
        raise InvalidInputError("the result overflows a float") from None
    except RecursionError:
        raise InvalidInputError("the expression is nested too deeply") from None
    if not isinstance(value, int | float):  # a negative base to a fractional power
        raise InvalidInputError("the result is a complex number; only real results are supported")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"the result is {value}, not a finite number")
    return CalculatorResult(expression=expression, result=value)

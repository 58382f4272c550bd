"""The python tools shipped in the layer: `lookup_order` (a small built-in dataset) and `calculator`."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aob.errors import ToolFailed
from aob.tools._tool import PythonTool


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrderLine(BaseModel):
    sku: str
    quantity: int
    unit_price: float


class Order(BaseModel):
    order_id: str
    status: Literal["placed", "shipped", "delivered", "refunded"]
    customer_email: str
    placed_at: date
    currency: str
    lines: list[OrderLine]

    @property
    def total(self) -> float:
        return round(sum(line.quantity * line.unit_price for line in self.lines), 2)


ORDERS: dict[str, Order] = {
    order.order_id: order
    for order in (
        Order(
            order_id="o-1001",
            status="delivered",
            customer_email="ada@example.com",
            placed_at=date(2025, 3, 2),
            currency="EUR",
            lines=[OrderLine(sku="kb-01", quantity=1, unit_price=129.0)],
        ),
        Order(
            order_id="o-1002",
            status="shipped",
            customer_email="grace@example.com",
            placed_at=date(2025, 3, 9),
            currency="USD",
            lines=[
                OrderLine(sku="mouse-02", quantity=2, unit_price=24.5),
                OrderLine(sku="pad-07", quantity=1, unit_price=9.99),
            ],
        ),
        Order(
            order_id="o-1003",
            status="placed",
            customer_email="alan@example.com",
            placed_at=date(2025, 3, 15),
            currency="GBP",
            lines=[OrderLine(sku="monitor-27", quantity=1, unit_price=279.0)],
        ),
    )
}


class LookupOrderArgs(_Args):
    order_id: Annotated[str, Field(pattern=r"^o-[0-9]{1,12}$", description="order id, e.g. o-1001")]


class OrderLookup(BaseModel):
    order_id: str
    found: bool
    order: Order | None = None
    total: float | None = Field(default=None, description="sum of the order's lines")


def lookup_order(args: LookupOrderArgs) -> OrderLookup:
    """Look up an order by id: its status, customer, lines and total (found false if there is none)."""
    order = ORDERS.get(args.order_id)
    if order is None:
        return OrderLookup(order_id=args.order_id, found=False)
    return OrderLookup(order_id=args.order_id, found=True, order=order, total=order.total)


_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: math.pow,  # a negative base to a fractional power raises, not a complex number
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _check(node: ast.AST) -> None:
    """Only numbers, + - * / // % ** and parentheses: anything else is not arithmetic."""
    match node:
        case ast.Expression(body=body):
            _check(body)
        case ast.Constant(value=value) if isinstance(value, int | float) and not isinstance(value, bool):
            pass
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            _check(left)
            _check(right)
        case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
            _check(operand)
        case _:
            raise ValueError("only numbers, + - * / // % ** and parentheses are allowed")


def _evaluate(node: ast.AST) -> float:
    match node:
        case ast.Expression(body=body):
            return _evaluate(body)
        case ast.Constant(value=int() | float() as value):
            return float(value)
        case ast.BinOp(left=left, op=op, right=right):
            return _BINARY[type(op)](_evaluate(left), _evaluate(right))
        case ast.UnaryOp(op=op, operand=operand):
            return _UNARY[type(op)](_evaluate(operand))
    raise AssertionError(f"unchecked node {node!r}")  # _check admits nothing else


class CalculatorArgs(_Args):
    expression: Annotated[str, Field(max_length=200, description="arithmetic, e.g. (129 - 24.5) * 2")]

    @field_validator("expression")
    @classmethod
    def _arithmetic(cls, expression: str) -> str:
        try:
            tree = ast.parse(expression, mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"not an arithmetic expression: {exc.msg}") from None
        _check(tree)
        return expression


class Calculation(BaseModel):
    expression: str
    value: float


def calculator(args: CalculatorArgs) -> Calculation:
    """Evaluate an arithmetic expression (numbers, + - * / // % ** and parentheses) in floating point."""
    try:
        value = _evaluate(ast.parse(args.expression, mode="eval"))
    except (ZeroDivisionError, OverflowError, ValueError) as exc:
        raise ToolFailed(f"calculator: {exc}", error_type=type(exc).__name__) from exc
    if not math.isfinite(value):
        raise ToolFailed("calculator: the result is not a finite number", error_type="OverflowError")
    return Calculation(expression=args.expression, value=value)


BUILTINS: tuple[PythonTool, ...] = (
    PythonTool("lookup_order", lookup_order, LookupOrderArgs, OrderLookup),
    PythonTool("calculator", calculator, CalculatorArgs, Calculation),
)

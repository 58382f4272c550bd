"""The python tools shipped in the layer.

`lookup_order` and `issue_refund` work on a small built-in order dataset (the refund simulates a
payment provider: same order and amount, same refund id); `calculator` does arithmetic;
`text_stats` and `extract_keywords` are the document tools of the document pipeline;
`generate_report` (a result far past a state's 256 KB, at its largest) and `report_stats` exercise
the claim check. All are pure and deterministic, so a replayed step gets the same result.
"""

from __future__ import annotations

import ast
import hashlib
import math
import operator
import re
from collections import Counter
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
    """Evaluate arithmetic: numbers, + - * / // % ** and parentheses."""
    try:
        value = _evaluate(ast.parse(args.expression, mode="eval"))
    except (ZeroDivisionError, OverflowError, ValueError) as exc:
        raise ToolFailed(f"calculator: {exc}", error_type=type(exc).__name__) from exc
    if not math.isfinite(value):
        raise ToolFailed("calculator: the result is not a finite number", error_type="OverflowError")
    return Calculation(expression=args.expression, value=value)


class IssueRefundArgs(_Args):
    order_id: Annotated[str, Field(pattern=r"^o-[0-9]{1,12}$", description="order id, e.g. o-1001")]
    amount: Annotated[float, Field(gt=0, description="in the order's currency, at most 2 decimals")]

    @field_validator("amount")
    @classmethod
    def _cents(cls, amount: float) -> float:
        if round(amount, 2) != amount:
            raise ValueError("at most 2 decimals (cents)")
        return amount


class Refund(BaseModel):
    refund_id: str = Field(description="the provider's id: the same for the same order and amount")
    order_id: str
    amount: float
    currency: str


def issue_refund(args: IssueRefundArgs) -> Refund:
    """Refund part or all of an order: at most the order's total, in the order's currency."""
    order = ORDERS.get(args.order_id)
    if order is None:
        raise ToolFailed(f"issue_refund: order_id: no order {args.order_id!r}", error_type="UnknownOrder")
    if args.amount > order.total:
        raise ToolFailed(
            f"issue_refund: amount: {args.amount:.2f} is above the order total {order.total:.2f} "
            f"{order.currency}; refund at most the total",
            error_type="AmountAboveTotal",
        )
    digest = hashlib.sha256(f"{order.order_id}:{args.amount:.2f}".encode()).hexdigest()
    return Refund(
        refund_id=f"rf-{digest[:16]}", order_id=order.order_id, amount=args.amount, currency=order.currency
    )


MAX_TEXT = 100_000
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, description="plain text")]
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_STOPWORD_TEXT = """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers him his how i if in into is it its itself just me more most my
    no nor not now of off on once only or other our ours out over own same she should so some such
    than that the their theirs them then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


class TextStatsArgs(_Args):
    text: Text
    words_per_minute: int = Field(default=200, ge=50, le=1000, description="reading speed")


class TextStats(BaseModel):
    words: int
    sentences: int = Field(description="runs of text ending in . ! or ? (or the text's end)")
    characters: int
    reading_time_s: int = Field(description="words at words_per_minute, rounded up to the second")


def text_stats(args: TextStatsArgs) -> TextStats:
    """Count a text's words, sentences and characters and estimate its reading time."""
    words = len(_words(args.text))
    sentences = sum(1 for part in _SENTENCE_END.split(args.text) if _WORD.search(part))
    return TextStats(
        words=words,
        sentences=sentences,
        characters=len(args.text),
        reading_time_s=math.ceil(words * 60 / args.words_per_minute),
    )


class ExtractKeywordsArgs(_Args):
    text: Text
    top_n: int = Field(default=5, ge=1, le=50, description="how many keywords")


class Keyword(BaseModel):
    word: str
    count: int


class Keywords(BaseModel):
    keywords: list[Keyword] = Field(description="most frequent first; ties in alphabetical order")


def extract_keywords(args: ExtractKeywordsArgs) -> Keywords:
    """The text's most frequent words (lowercased; stopwords, numbers and words under 3 letters left out)."""
    counts = Counter(
        word
        for word in (word.lower() for word in _words(args.text))
        if len(word) >= 3 and word not in STOPWORDS and not word.isdigit()
    )
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: args.top_n]
    return Keywords(keywords=[Keyword(word=word, count=count) for word, count in ranked])


class GenerateReportArgs(_Args):
    topic: Annotated[str, Field(min_length=1, max_length=100, description="what the report is about")]
    sections: int = Field(default=10, ge=1, le=1000, description="how many sections")
    words_per_section: int = Field(default=100, ge=1, le=1000, description="words in each section's body")


class ReportSection(BaseModel):
    heading: str
    body: str


class Report(BaseModel):
    topic: str
    sections: list[ReportSection]


def generate_report(args: GenerateReportArgs) -> Report:
    """Write a long report on a topic: numbered sections of filler text (the same text for the same args)."""
    words = f"the quarterly figures for {args.topic} show steady growth across regions".split()
    return Report(
        topic=args.topic,
        sections=[
            ReportSection(
                heading=f"Section {number}: {args.topic}",
                body=" ".join(words[(number + i) % len(words)] for i in range(args.words_per_section)) + ".",
            )
            for number in range(1, args.sections + 1)
        ],
    )


class ReportStatsArgs(_Args):
    report: Report


class ReportStats(BaseModel):
    sections: int
    words: int = Field(description="words in the sections' bodies")
    sha256: str = Field(description="of the report's compact JSON: proof of which report was read")


def report_stats(args: ReportStatsArgs) -> ReportStats:
    """Count a report's sections and words, with a digest of the report as received."""
    text = args.report.model_dump_json().encode()
    return ReportStats(
        sections=len(args.report.sections),
        words=sum(len(_words(section.body)) for section in args.report.sections),
        sha256=hashlib.sha256(text).hexdigest(),
    )


# Built-ins that simulate an external system: a deployment's tools file may replace them.
STAND_INS = frozenset({"issue_refund"})
BUILTINS: tuple[PythonTool, ...] = (
    PythonTool("lookup_order", lookup_order, LookupOrderArgs, OrderLookup),
    PythonTool("calculator", calculator, CalculatorArgs, Calculation),
    PythonTool("issue_refund", issue_refund, IssueRefundArgs, Refund),
    PythonTool("text_stats", text_stats, TextStatsArgs, TextStats),
    PythonTool("extract_keywords", extract_keywords, ExtractKeywordsArgs, Keywords),
    PythonTool("generate_report", generate_report, GenerateReportArgs, Report),
    PythonTool("report_stats", report_stats, ReportStatsArgs, ReportStats),
)

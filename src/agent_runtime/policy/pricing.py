"""What model calls cost: a price table in USD per million tokens, shipped defaults plus config.

The shipped prices are the providers' list prices for standard (not batch, not cached) input and
output tokens as we knew them; they change, so check them against the providers' price pages and
set ``pricing.models`` in ``config.yaml`` for the models you use. A key prices the exact name and
its dated or ``-latest`` variants (``gpt-4o`` covers ``gpt-4o-2024-08-06``, ``claude-sonnet-4``
covers ``claude-sonnet-4-20250514``) but no other suffix: ``o3-pro`` is not ``o3``. A name may carry
a ``provider/`` prefix (``openai/gpt-4o``). A model the table does not know has no price:
:func:`cost_of` returns ``None`` (the cost is unknown, not zero).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from agent_runtime.settings import ModelPrice, PricingSettings

_VARIANT = re.compile(r"^-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
_PER_TOKEN = 1_000_000


def _p(input_usd: float, output_usd: float) -> ModelPrice:
    return ModelPrice(input_usd_per_mtok=input_usd, output_usd_per_mtok=output_usd)


DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    # OpenAI
    "gpt-4o": _p(2.50, 10.00),
    "gpt-4o-mini": _p(0.15, 0.60),
    "gpt-4.1": _p(2.00, 8.00),
    "gpt-4.1-mini": _p(0.40, 1.60),
    "gpt-4.1-nano": _p(0.10, 0.40),
    "o1": _p(15.00, 60.00),
    "o3": _p(2.00, 8.00),
    "o3-mini": _p(1.10, 4.40),
    "o4-mini": _p(1.10, 4.40),
    "gpt-5": _p(1.25, 10.00),
    "gpt-5-mini": _p(0.25, 2.00),
    "gpt-5-nano": _p(0.05, 0.40),
    "gpt-5.1": _p(1.25, 10.00),
    # Anthropic
    "claude-3-5-haiku": _p(0.80, 4.00),
    "claude-3-5-sonnet": _p(3.00, 15.00),
    "claude-3-7-sonnet": _p(3.00, 15.00),
    "claude-sonnet-4": _p(3.00, 15.00),
    "claude-sonnet-4-0": _p(3.00, 15.00),
    "claude-sonnet-4-5": _p(3.00, 15.00),
    "claude-sonnet-4-6": _p(3.00, 15.00),
    "claude-opus-4": _p(15.00, 75.00),
    "claude-opus-4-0": _p(15.00, 75.00),
    "claude-opus-4-1": _p(15.00, 75.00),
    "claude-opus-4-5": _p(5.00, 25.00),
    "claude-opus-4-6": _p(5.00, 25.00),
    "claude-haiku-4-5": _p(1.00, 5.00),
    # The offline test model costs nothing.
    "offline-test": _p(0.0, 0.0),
}


class PriceTable:
    """The shipped prices with ``overrides`` (``pricing.models``) added or replacing entries."""

    def __init__(self, overrides: Mapping[str, ModelPrice] | None = None) -> None:
        self._prices: dict[str, ModelPrice] = {**DEFAULT_PRICES, **(overrides or {})}

    @classmethod
    def from_settings(cls, settings: PricingSettings) -> PriceTable:
        return cls(settings.models)

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model``: its exact entry, else the longest key it is a dated variant of."""
        name = model.rsplit("/", 1)[-1]
        if name in self._prices:
            return self._prices[name]
        best: str | None = None
        for key in self._prices:
            if name.startswith(key) and _VARIANT.match(name[len(key) :]) and (best is None or len(key) > len(best)):
                best = key
        return self._prices[best] if best is not None else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """USD for that many tokens, or ``None`` when the model has no price."""
        price = self.price(model)
        if price is None:
            return None
        return (input_tokens * price.input_usd_per_mtok + output_tokens * price.output_usd_per_mtok) / _PER_TOKEN


_DEFAULT_TABLE = PriceTable()


def cost_of(model: str, input_tokens: int, output_tokens: int, prices: PriceTable | None = None) -> float | None:
    """USD for ``input_tokens`` + ``output_tokens`` of ``model`` (``prices``, else the shipped table);
    ``None`` for a model without a price (unknown cost, never zero)."""
    return (prices or _DEFAULT_TABLE).cost(model, input_tokens, output_tokens)

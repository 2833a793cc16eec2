"""A made-up account's orders, one lifecycle after another, as the trading stream reports them.

Deterministic from a seed: each order is a limit order of a few shares of
one of the symbols, and lives one of four lives (weights in :data:`LIVES`):
filled in one or more partial fills, canceled, partly filled then canceled,
or replaced by a new order (``replaced``, then the new order's own life).
Every update is the ``data`` of a ``trade_updates`` message, with the whole
order object as alpaca-py's ``Order`` model parses it; its ``timestamp`` is
taken when the update is drawn, so updates are stamped when they are sent.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Final

from simulator.wire import rfc3339

#: An order's lives and their weights: filled, canceled, partly filled then canceled, replaced.
LIVES: Final = (("fill", 6), ("cancel", 2), ("partial_cancel", 1), ("replace", 1))

Now = Callable[[], int]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class OrderFlow:
    """The account's updates, drawn one at a time (:meth:`next`), each stamped by ``now`` (ns)."""

    def __init__(self, symbols: tuple[str, ...], seed: int, now: Now) -> None:
        self.symbols = symbols
        self.rng = random.Random(f"orders-{seed}")
        self.now = now
        self.last_ns = 0
        self.orders = 0
        self._updates = self._lives()

    def next(self) -> dict[str, Any]:
        """The next update's ``data``."""
        return next(self._updates)

    def _stamp(self) -> int:
        self.last_ns = max(self.now(), self.last_ns + 1)
        return self.last_ns

    def _new_order(self, replaces: str | None = None, qty: int | None = None) -> dict[str, Any]:
        rng = self.rng
        symbol = rng.choice(self.symbols)
        price = Decimal(rng.randrange(5_000, 50_000)) / 100
        self.orders += 1
        when = rfc3339(self._stamp())
        return {
            "id": _uuid(rng), "client_order_id": _uuid(rng), "created_at": when, "updated_at": when,
            "submitted_at": when, "filled_at": None, "expired_at": None, "expires_at": None, "canceled_at": None,
            "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": replaces,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)), "symbol": symbol,
            "asset_class": "us_equity", "notional": None, "qty": str(qty or rng.randint(1, 20) * 5),
            "filled_qty": "0", "filled_avg_price": None, "order_class": "simple", "order_type": "limit",
            "type": "limit", "side": rng.choice(("buy", "sell")), "time_in_force": "day",
            "limit_price": str(price), "stop_price": None, "status": "new", "extended_hours": False, "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None, "position_intent": None,
        }  # fmt: skip

    def _update(self, order: dict[str, Any], event: str, **fill: str) -> dict[str, Any]:
        """An update of ``order`` (changed in place to its state after ``event``), stamped now."""
        stamp = rfc3339(self._stamp())
        order["updated_at"] = stamp
        data: dict[str, Any] = {"event": event, "timestamp": stamp, "order": dict(order)}
        if fill:
            data["execution_id"] = _uuid(self.rng)
            data.update(fill)
        return data

    def _fills(self, order: dict[str, Any], position: list[Decimal], parts: int) -> Iterator[dict[str, Any]]:
        """``parts`` fills of the order at its limit price; the last one fills it whole."""
        qty, price = Decimal(order["qty"]), Decimal(order["limit_price"])
        sign = 1 if order["side"] == "buy" else -1
        filled = Decimal(0)
        for part in range(parts):
            last = part == parts - 1
            size = qty - filled if last else max(Decimal(1), (qty / parts).to_integral_value())
            filled += size
            position[0] += sign * size
            order["filled_qty"] = str(filled)
            order["filled_avg_price"] = str(price)
            order["status"] = "filled" if filled == qty else "partially_filled"
            if filled == qty:
                order["filled_at"] = rfc3339(self.last_ns + 1)
            yield self._update(
                order, "fill" if filled == qty else "partial_fill",
                price=str(price), qty=str(size), position_qty=str(position[0]),
            )  # fmt: skip
            if filled == qty:
                return

    def _lives(self) -> Iterator[dict[str, Any]]:
        rng = self.rng
        positions: dict[str, list[Decimal]] = {}
        names = [name for name, _ in LIVES]
        weights = [weight for _, weight in LIVES]
        while True:
            order = self._new_order()
            position = positions.setdefault(order["symbol"], [Decimal(0)])
            yield self._update(order, "new")
            life = rng.choices(names, weights)[0]
            if life == "fill":
                yield from self._fills(order, position, rng.randint(1, 3))
            elif life in ("cancel", "partial_cancel"):
                if life == "partial_cancel":
                    yield next(self._fills(order, position, 2))  # the first of two fills, then the cancel
                order["status"] = "canceled"
                order["canceled_at"] = rfc3339(self.last_ns + 1)
                yield self._update(order, "canceled")
            else:  # replaced by an order of another quantity, which then fills
                new = self._new_order(replaces=order["id"], qty=int(Decimal(order["qty"])) + 5)
                new["symbol"], new["side"], new["limit_price"] = order["symbol"], order["side"], order["limit_price"]
                order["status"], order["replaced_by"] = "replaced", new["id"]
                order["replaced_at"] = rfc3339(self.last_ns + 1)
                yield self._update(order, "replaced")
                yield self._update(new, "new")
                yield from self._fills(new, position, 1)

// The watchlist table: the latest quote and trade per symbol, each change flashed as it lands.
//
// Messages only update `rows` state; the DOM is written once per animation frame, so a burst of
// quotes costs one repaint, not one per message.

const FLASH_MS = 900;
const UP = "rgba(38, 166, 154, 0.35)";
const DOWN = "rgba(239, 83, 80, 0.35)";

export function formatPrice(price) {
  if (price === undefined || price === null || price <= 0) return "–";
  return price >= 1 ? price.toFixed(2) : price.toFixed(4);
}

function cell(row, name) {
  const td = document.createElement("td");
  td.className = name;
  row.append(td);
  return td;
}

function flash(element, up) {
  element.animate([{ backgroundColor: up ? UP : DOWN }, { backgroundColor: "transparent" }], {
    duration: FLASH_MS,
    easing: "ease-out",
  });
}

function setPrice(td, price, previous, size) {
  td.textContent = formatPrice(price);
  if (size !== undefined) {
    const small = document.createElement("small");
    small.textContent = ` ×${size}`;
    td.append(small);
  }
  if (previous !== undefined && price !== previous) flash(td, price > previous);
}

export class Watchlist {
  /**
   * @param {HTMLTableSectionElement} tbody
   * @param {{onSelect: (symbol: string) => void, onRemove: (symbol: string) => void}} handlers
   */
  constructor(tbody, handlers) {
    this.tbody = tbody;
    this.handlers = handlers;
    this.rows = new Map(); // symbol -> {tr, cells, quote, trade, shown: {bid, ask, last}}
    this.dirty = new Set();
    this.frame = 0;
    tbody.addEventListener("click", (event) => {
      const tr = event.target.closest("tr[data-symbol]");
      if (!tr) return;
      if (event.target.closest("button.remove")) this.handlers.onRemove(tr.dataset.symbol);
      else this.handlers.onSelect(tr.dataset.symbol);
    });
  }

  get symbols() {
    return [...this.rows.keys()];
  }

  /** Show exactly these symbols, in this order; rows already shown keep their data. */
  setSymbols(symbols) {
    const next = new Map();
    for (const symbol of symbols) next.set(symbol, this.rows.get(symbol) ?? this.makeRow(symbol));
    this.rows = next;
    this.tbody.replaceChildren(...[...next.values()].map((row) => row.tr));
  }

  makeRow(symbol) {
    const tr = document.createElement("tr");
    tr.dataset.symbol = symbol;
    const cells = {};
    for (const name of ["symbol", "bid", "ask", "spread", "last"]) cells[name] = cell(tr, name);
    cells.symbol.textContent = symbol;
    for (const name of ["bid", "ask", "spread", "last"]) cells[name].textContent = "–";
    const remove = document.createElement("button");
    remove.className = "remove";
    remove.title = `remove ${symbol}`;
    remove.textContent = "×";
    cell(tr, "actions").append(remove);
    return { tr, cells, quote: null, trade: null, shown: {} };
  }

  select(symbol) {
    for (const [name, row] of this.rows) row.tr.classList.toggle("selected", name === symbol);
  }

  /** A quote ({"T":"q"}) or trade ({"T":"t"}) message; others are ignored. */
  take(message) {
    const row = this.rows.get(message.S);
    if (!row) return;
    if (message.T === "q") row.quote = message;
    else if (message.T === "t") row.trade = message;
    else return;
    this.dirty.add(message.S);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    for (const symbol of this.dirty) {
      const row = this.rows.get(symbol);
      if (row) this.render(row);
    }
    this.dirty.clear();
  }

  render(row) {
    const { cells, quote, trade, shown } = row;
    if (quote) {
      setPrice(cells.bid, quote.bp, shown.bid, quote.bs);
      setPrice(cells.ask, quote.ap, shown.ask, quote.as);
      shown.bid = quote.bp;
      shown.ask = quote.ap;
      if (quote.bp > 0 && quote.ap > 0) {
        const spread = quote.ap - quote.bp;
        const mid = (quote.ap + quote.bp) / 2;
        cells.spread.textContent = spread.toFixed(mid >= 1 ? 2 : 4);
        cells.spread.title = `${((spread / mid) * 10000).toFixed(1)} bp of the mid`;
      } else {
        cells.spread.textContent = "–";
      }
      row.tr.dataset.quoteTime = quote.t;
    }
    if (trade) {
      setPrice(cells.last, trade.p, shown.last, trade.s);
      cells.last.title = `trade ${trade.i} on ${trade.x} at ${trade.t}`;
      shown.last = trade.p;
    }
  }
}

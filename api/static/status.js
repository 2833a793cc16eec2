// The status strip: GET /status (the producer's and consumers' /health, summed by the API) every few seconds.

const POLL_MS = 2000;
const LAG_WARN = 10000; // records behind: some lag is normal (batches), a growing backlog is not

function number(value, digits = 0) {
  if (value === undefined || value === null) return "–";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function show(id, text, warn = false) {
  const element = document.getElementById(id);
  element.textContent = text;
  element.classList.toggle("warn", warn);
}

export function renderStatus(status) {
  show("st-events", number(status.events_per_s, 1));
  show("st-drops", number(status.drops), status.drops > 0);
  show("st-lag", number(status.consumer_lag), status.consumer_lag > LAG_WARN);
  show("st-dlq", number(status.dead_letters), status.dead_letters > 0);
  const parts = document.getElementById("st-parts");
  parts.replaceChildren(
    ...Object.entries(status.parts ?? {}).map(([name, part]) => {
      const badge = document.createElement("span");
      badge.className = `part ${part.reachable ? "up" : "down"}`;
      // The producer's badge carries its upstream connection's state (streaming, backoff ...).
      badge.textContent = name === "producer" && status.upstream ? `${name}: ${status.upstream}` : name;
      badge.title = part.reachable ? `${part.url}: answering` : `${part.url}: ${part.error ?? "not reachable"}`;
      return badge;
    }),
  );
}

function renderUnavailable(reason) {
  for (const id of ["st-events", "st-drops", "st-lag", "st-dlq"]) show(id, "–");
  const parts = document.getElementById("st-parts");
  const badge = document.createElement("span");
  badge.className = "part down";
  badge.textContent = "status unavailable";
  badge.title = reason;
  parts.replaceChildren(badge);
}

/** Poll /status for ever; each answer (or failure) is drawn and handed to `onStatus`. */
export function pollStatus(onStatus) {
  const tick = async () => {
    try {
      const response = await fetch("/status", { cache: "no-store" });
      if (!response.ok) throw new Error(`GET /status: ${response.status}`);
      const status = await response.json();
      renderStatus(status);
      onStatus(status);
    } catch (error) {
      renderUnavailable(String(error));
      onStatus(null);
    } finally {
      setTimeout(tick, POLL_MS);
    }
  };
  tick();
}

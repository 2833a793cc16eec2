// The status strip: GET /status (every instance's health document from Redis, summed by the API) every few seconds.

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

const BADGE_CLASS = { ready: "up", starting: "warn", stopping: "warn", failing: "down", lost: "down lost" };

function ago(seconds) {
  if (seconds === undefined || seconds === null) return "";
  return seconds < 1 ? "now" : `${Math.round(seconds)} s ago`;
}

/** One badge per instance, lost ones included; a pipeline role with none at all gets a "down" badge of its name. */
function instanceBadge(doc, upstream) {
  const badge = document.createElement("span");
  badge.className = `part ${BADGE_CLASS[doc.state] ?? "down"}`;
  badge.dataset.role = doc.role;
  badge.dataset.state = doc.state;
  // The producer's badge carries its upstream connection's state (streaming, backoff ...).
  const said = doc.role === "producer" && doc.state === "ready" && upstream ? upstream : doc.state;
  badge.textContent = `${doc.role} ${doc.instance}: ${said}`;
  const rate = doc.rate === null || doc.rate === undefined ? "" : `, ${number(doc.rate, 1)} ${doc.rate_unit ?? ""}`;
  const lag = doc.lag === null || doc.lag === undefined ? "" : `, lag ${number(doc.lag)}`;
  const error = doc.last_error ? `\nlast error: ${doc.last_error}` : "";
  badge.title = `${doc.role} on ${doc.host ?? "?"} (pid ${doc.pid ?? "?"}, v${doc.version ?? "?"}): ${doc.state}${rate}${lag}, seen ${ago(doc.silent_s)}${error}`;
  return badge;
}

export function renderStatus(status) {
  show("st-events", number(status.events_per_s, 1));
  show("st-drops", number(status.drops), status.drops > 0);
  show("st-lag", number(status.consumer_lag), status.consumer_lag > LAG_WARN);
  show("st-dlq", number(status.dead_letters), status.dead_letters > 0);
  const instances = status.instances ?? [];
  const missing = Object.entries(status.parts ?? {})
    .filter(([name]) => !instances.some((doc) => doc.role === name))
    .map(([name, part]) => {
      const badge = document.createElement("span");
      badge.className = "part down";
      badge.textContent = name;
      badge.title = `${name}: ${part.error ?? "not running"}`;
      return badge;
    });
  document.getElementById("st-parts").replaceChildren(
    ...missing, ...instances.map((doc) => instanceBadge(doc, status.upstream)),
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

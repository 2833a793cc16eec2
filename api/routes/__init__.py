"""One router per resource: history, latest, symbols, operations, the dashboard page."""

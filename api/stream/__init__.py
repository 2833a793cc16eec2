"""The live stream: Alpaca's protocol (protocol), Redis subscriptions and fan-out (pubsub, hub, outbox),
and the WebSocket endpoint (handler)."""

"""The live stream: Alpaca's protocol (protocol), Redis subscriptions and fan-out (pubsub, hub, outbox),
when and how clients are written (flusher, direct), and the WebSocket endpoint (handler)."""

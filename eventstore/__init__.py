"""An idempotent event store on NATS JetStream. Knows events, not risk."""

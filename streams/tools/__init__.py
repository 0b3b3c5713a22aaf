"""The tools around a worker: the `orderflow` command, the demo, the traffic simulator, the effects
gateway, dead-letter replay, the publisher, topic creation and the local Kafka broker."""

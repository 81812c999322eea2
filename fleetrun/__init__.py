"""fleetrun: run shell commands across a fleet over SSH, driven by Kafka events."""

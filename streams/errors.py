"""One root for orderflow's own errors, so callers (the CLI above all) can catch them in one place."""


class OrderflowError(Exception):
    """An error a user can act on; its message is one line meant for people."""


class ConfigError(OrderflowError):
    """A setting from the environment or the command line is invalid."""


class InvalidEvent(OrderflowError):
    """An event envelope breaks the contract; the message says which rule."""


class LifecycleError(OrderflowError):
    """A transitions table is inconsistent (unknown status, conflicting rows, unreachable status)."""


class BrokerError(OrderflowError):
    """The local Kafka broker could not be fetched, started, stopped or reached."""


class TopicMismatch(OrderflowError):
    """An existing topic has another shape than the configuration asks for."""

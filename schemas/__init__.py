"""The order event envelope. Imports streams first, so its guard decides (streams/compiled.py)
whether the compiled envelope runs."""

import streams  # noqa: F401

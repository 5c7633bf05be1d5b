"""Third-party messages that tell a langtransfer user nothing, filtered in one place.

Each filter drops one exact message of one library, so everything else that library
says (a real warning) still shows. Installing is idempotent and happens when the module
that triggers the message is imported (:mod:`langtransfer.representations.adapter`).

* ``adapters``: "There are adapters available but none are activated for the forward
  pass." A composed model without adapters (``base``, ``stp``, ``slp+stp``) runs on a
  base that holds other models' adapters (one loaded base serves many runs): none active
  is intended, not a forgotten ``set_active_adapters``.

(transformers' "mtime may not be reliable" came from our own checkpoint rotation asking
for modification-time order; :mod:`langtransfer.train` orders by step number instead.)
"""

from __future__ import annotations

import logging

#: logger name -> the start of the one message dropped from it.
DROPPED_LOG_MESSAGES: dict[str, str] = {
    "adapters.model_mixin": "There are adapters available but none are activated",
}


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def install_filters() -> None:
    """Add the filters of :data:`DROPPED_LOG_MESSAGES` to their loggers (once each)."""
    for name, prefix in DROPPED_LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropMessage(prefix))

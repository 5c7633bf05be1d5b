"""Third-party messages that tell a langtransfer user nothing, filtered in one place.

Each filter drops one exact message of one library, so everything else that library
says (a real warning) still shows. Installing is idempotent and happens when the module
that triggers the message is imported (:mod:`langtransfer.representations.adapter`).

* ``adapters``: "There are adapters available but none are activated for the forward
  pass." A composed model without adapters (``base``, ``stp``, ``slp+stp``) runs on a
  base that holds other models' adapters (one loaded base serves many runs): none active
  is intended, not a forgotten ``set_active_adapters``.
* ``adapters``' own (m)T5 decoder: "Passing a tuple of `past_key_values` is deprecated"
  and, from the legacy conversion it then calls, transformers' "past_key_values should
  not be None in from_legacy_cache()": said on every forward with labels (no cache is
  passed at all), about code inside ``adapters``, nothing a user can change. (Turning
  the cache off instead would avoid it but changes logits in the last float digits, so
  a PEFT-loaded prompt would no longer match ours exactly.)

(transformers' "mtime may not be reliable" came from our own checkpoint rotation asking
for modification-time order; :mod:`langtransfer.training.trainer` orders by step number instead.)
"""

from __future__ import annotations

import logging

#: logger name -> the start of the one message dropped from it.
DROPPED_LOG_MESSAGES: dict[str, str] = {
    "adapters.model_mixin": "There are adapters available but none are activated",
    "adapters.models.mt5.modeling_mt5": "Passing a tuple of `past_key_values` is deprecated",
    "adapters.models.t5.modeling_t5": "Passing a tuple of `past_key_values` is deprecated",
    "transformers.cache_utils": "past_key_values should not be None in from_legacy_cache()",
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

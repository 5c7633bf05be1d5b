"""langtransfer: cross-lingual transfer with soft language prompts and adapters.

Implements *Soft Language Prompts for Language Transfer* (Vykopal, Ostermann, Šimko;
NAACL 2025) on frozen multilingual seq2seq models.
"""

from langtransfer.errors import LangTransferError

__version__ = "0.1.0"

__all__ = ["LangTransferError", "__version__"]

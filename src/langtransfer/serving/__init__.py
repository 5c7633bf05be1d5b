"""Serving: a dynamic batcher (no web dependency) and the HTTP app over a Predictor.

``batcher`` needs only the standard library; ``app`` and ``metrics`` need the ``serve``
extra (FastAPI, uvicorn, prometheus-client): ``pip install 'langtransfer[serve]'``.
"""

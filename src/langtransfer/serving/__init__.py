"""Serving: a dynamic batcher (no web dependency) and the HTTP app over a Predictor.

``batcher`` and ``body`` (the request body limits) need only the standard library;
``app`` and ``metrics`` need the ``serve`` extra (FastAPI, uvicorn, prometheus-client):
``pip install 'langtransfer[serve]'``.
"""

"""Online prediction service: serves each pipeline's ``champion`` and follows the alias as it moves.

A new version is loaded beside the old one (off the event loop) and swapped in with one reference
assignment, so requests in flight finish on the old model and none fail or wait for the load.
Requests are validated against the pipeline schema; the model's signature is checked against the
same schema when it loads. Every prediction is appended to the prediction log.

Run it with ``make serve`` or ``python -m include.ct_serving``. It uses the library (``include.ct``);
the library never uses it.
"""

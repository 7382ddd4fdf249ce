"""Human in the loop: ``alreid annotate`` serves the pairs a sampler picks to a person in a web page.

- :mod:`alreid.annotate.store`: the durable SQLite store (WAL; batches, answers, leases, checkpoints);
- :mod:`alreid.annotate.session`: the trial loop with a person as the oracle (leases, contradictions, undo);
- :mod:`alreid.annotate.app`: the FastAPI app (JSON API + the page in ``static/``);
- :mod:`alreid.annotate.export`: answers to Parquet/CSV for ``--oracle replay:FILE``.

Nothing here is imported by ``import alreid``; FastAPI is imported only when the server starts.
"""

"""`dgn-am serve`: the deep visualization toolbox (Yosinski et al. 2015) as a local web app.

    worker.py     one background thread per model copy; a job asked for while it runs is joined, not repeated
    uploads.py    uploaded images decoded safely (bounded bytes and pixels) and fitted to the model's input
    cache.py      preferred inputs per unit, stored as `dgn-am synthesize` output folders (PNG + manifest.jsonl)
    toolbox.py    the work behind each view: activations, prediction, attribution, data-set views, synthesis
    benchmark.py  a `dgn-am benchmark` output folder read for the benchmark page
    server.py     the FastAPI routes (needs the optional [app] extra) and the static page in static/

Nothing here is imported by `import dgn_am`; `dgn_am.cli.serve` imports the server only when `serve` runs.
"""

"""report.html: one self-contained page per run (run.py) or for several runs (several.py),
built from the pieces in html.py with the standard library alone."""

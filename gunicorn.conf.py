"""gunicorn settings for every way the API is served.

gunicorn reads ./gunicorn.conf.py by itself, so the Procfile, `make serve`, the Dockerfile and
the end-to-end tests (all started from the project root) share it; flags on their command
lines still win.
"""

# A /v1/drafts call stops starting drafts after DRAFTS_TIME_BUDGET_SECONDS (20 s by default)
# and finishes the draft in flight: the worker timeout must leave room for that, or gunicorn
# kills a worker halfway through a chunk (its default is 30 s).
timeout = 60
graceful_timeout = 30

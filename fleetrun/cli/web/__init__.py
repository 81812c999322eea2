"""`fleetrun web`: a server-rendered console over the sink's PostgreSQL and the status and result
topics, beside the CLI it shares its reading, grouping and cancelling with.

It lives in the front-end layer (fleetrun/cli) because it is a second front end over the same
data as `fleetrun results/status/cancel`, not a stage of the pipeline: it reuses their code
(grouping.py, query.py, cancel.py) instead of copying it, and nothing below imports it.
"""

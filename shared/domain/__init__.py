"""The domain layer: every rule about sweeps and runs, written once, shared by the JSON API,
the web UI and the worker.

- `errors`: NotFound, Conflict, InvalidInput and Forbidden (api/errors.py: 404, 409, 422, 403).
- `access`: what a token may do: its role, and whose sweeps it may cancel or retry.
- `submit`: read, validate and store a sweep file (reusing earlier results).
- `runs`: a run's life: every change of its state (claim, heartbeat, finish, expire, prune,
  cancel, retry, links) and the predicates they rest on (`needs_message`, `is_linked`).
- `sweeps`: the rule that says when a sweep is finished.
- `reads`: sweeps, runs, summaries, and which run's results a reused run shows.
- `metrics`: one run's series and latest values, and the min-max downsampling rule.
- `curves`: many runs' curves at once, downsampled inside the database.
- `tables`: rows for the comparison table.

Functions take `session` and may flush, never commit: the unit of work at the edge
(shared/db/session.py) commits, and sends the task messages recorded on the session.
"""

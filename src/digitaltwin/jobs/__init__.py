"""Jobs: trainings and backtests run outside the request that asked for them, with persisted state.

* :mod:`.store`: the ``jobs`` table, which is also the queue (claims with ``FOR UPDATE SKIP LOCKED``
  on PostgreSQL); a job outlives its request and a restart of the process.
* :mod:`.service`: submit (checks and limits), get, list, cancel.
* :mod:`.run`: what each kind of job does, and :class:`~.run.JobRunner`, the threads that run
  queued jobs in ``digitaltwin serve`` (embedded default) or ``digitaltwin worker`` (production),
  with the lost-job policy.
"""

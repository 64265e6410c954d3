"""Processes that do the work: the lease worker (serial applier per day) and rq jobs."""

"""Jepsen-style fault harness: real processes, seeded faults, a recorded history, a checker.

``cluster`` starts redis-server, a loopback TCP proxy, web and worker processes;
``ops`` drives bookings through HTTP (or the in-process client); ``faults`` injects
the seeded schedule; ``history`` records every operation; ``checker`` decides whether
the history and the committed data keep G1-G6; ``harness`` ties a run together.
"""

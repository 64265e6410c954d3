"""Fault tests: every test with real processes on the private redis-server is audited after."""

from tests.checks import audit_after_test  # noqa: F401 (autouse)

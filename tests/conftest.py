import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.support.services", "tests.support.databases"]

# CI gets a bounded, derandomised hypothesis run; developers get the default profile locally.
settings.register_profile(
    "ci",
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

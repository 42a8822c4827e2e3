"""Fixtures live in tests/support/*; each module is a plugin registered here."""

pytest_plugins = [
    "tests.support.s3",
    "tests.support.gateway",
    "tests.support.radosgw",
    "tests.support.browser",
    "tests.support.processes",
    "pytester",  # tests/unit/test_tiers.py runs the unit guard on sample tests
]

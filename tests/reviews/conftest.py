"""The harvest suite's fixtures (both store adapters, moto's session server), reused."""

from tests.harvest.conftest import env, moto_oss, store  # noqa: F401

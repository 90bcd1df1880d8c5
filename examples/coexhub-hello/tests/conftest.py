import pytest

import coexhub_hello


@pytest.fixture(scope="session")
def coexhub_extra_plugins():
    """Register the plugin without installing it (harmless when it is installed too)."""
    return [coexhub_hello]

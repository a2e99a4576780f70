from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="module")
def local_prosody(tmp_path_factory):
    """A real Prosody on 127.0.0.1 for the tests of one module, stopped at the end."""
    from prosody_analyze.local_prosody import LocalProsody

    with LocalProsody(tmp_path_factory.mktemp("prosody")) as prosody:
        yield prosody

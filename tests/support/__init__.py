"""Helpers shared by the tests, imported one way: `from tests.support.<module> import ...`."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

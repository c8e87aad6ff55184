"""The tests import the harness package (bench/tetherbench) from bench/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

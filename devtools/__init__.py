"""Development tooling, not installed with the runtime: the operator simulator, accuracy
evaluation, publication comparison, the demo, benchmarks and the scale-out check.

Run from a checkout: ``python -m devtools simulate …`` (see ``python -m devtools --help``).
"""

from pathlib import Path

#: The sample network shipped for the simulator (Cairns, Sunbus; see data/README.md).
SAMPLE_NETWORK = Path(__file__).resolve().parent / "data" / "cairns_gtfs.zip"

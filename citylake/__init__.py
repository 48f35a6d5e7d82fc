"""citylake: the city's data platform. Rooms by the flow: core → (ingestion) → build → (quality)
→ publish → consumers → night → cli; see README, "The flow"."""

__version__ = "0.1.0"

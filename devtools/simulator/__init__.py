"""Operator extract simulator: realistic daily deliveries from a real GTFS network, with ground truth."""

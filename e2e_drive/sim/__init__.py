"""Simulation layer: highway-env scenarios that work with continuous control, ground truth, traffic cores.

Knows nothing of agents, learning or the Gymnasium observation.
"""

"""Observation: metric buffers and histories, trends, the wall clock, logs and exports."""

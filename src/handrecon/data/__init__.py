"""Datasets: synthetic (embedded), FreiHAND, HO3D; detections; transforms; DataModules."""

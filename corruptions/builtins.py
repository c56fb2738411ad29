"""Imports every built-in kernel module so that the 19 corruptions are registered."""

from corruptions import blur, digital, frost, motion, noise, weather  # noqa: F401

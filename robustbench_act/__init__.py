"""actbench: does this activation function make a CNN more robust to noise and corruptions?"""

__version__ = "0.1.0"

"""A market data stream compatible with Alpaca's v2, with a simulated market behind it.

tickpipe reads it instead of Alpaca when no credentials are set, and every
test and benchmark reads it, through the very same client code.
"""

from simulator.config import FEEDS, Faults, SimulatorConfig
from simulator.market import DEFAULT_START_NS, Market
from simulator.server import Simulator
from simulator.symbols import DEFAULT_SYMBOLS, synthetic_symbols

__all__ = [
    "DEFAULT_START_NS",
    "DEFAULT_SYMBOLS",
    "FEEDS",
    "Faults",
    "Market",
    "Simulator",
    "SimulatorConfig",
    "synthetic_symbols",
]

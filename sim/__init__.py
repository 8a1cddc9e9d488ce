"""The simulator: SimPy campaigns driving the dialer's engine core, replications, reports.

>>> from sim import scenario, simulate
>>> report = simulate(scenario.default().replace(replications=2, hours=1))
>>> 0 < report.pooled["agent_occupancy"] < 1
True
"""

from sim import scenario
from sim.runner import SimulationReport, simulate
from sim.scenario import Scenario

__all__ = ["Scenario", "SimulationReport", "scenario", "simulate"]

"""infusim: a simulator of stem cell infusion therapy (research use only, not medical advice).

The public API in one screen::

    import infusim
    scenario = infusim.load("examples/msc-iv-human.yaml")   # validate a scenario file
    model = infusim.assemble(scenario)                       # declared whole-body transfer network
    result = infusim.simulate(scenario)                      # cells, observations and a summary
    result.cells, result.observations, result.summary
"""

from __future__ import annotations

__version__ = "0.1.0"

from infusim.errors import InfusimError
from infusim.model.kinetics import assemble
from infusim.scenario import Scenario, from_dict, load
from infusim.simulation import Result, simulate
from infusim.solve import solve

__all__ = [
    "InfusimError",
    "Result",
    "Scenario",
    "__version__",
    "assemble",
    "from_dict",
    "load",
    "simulate",
    "solve",
]

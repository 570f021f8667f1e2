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

from infusim.errors import InfusimError  # noqa: E402
from infusim.model.kinetics import assemble  # noqa: E402
from infusim.scenario import Scenario, from_dict, load  # noqa: E402
from infusim.simulation import Result, simulate  # noqa: E402
from infusim.solve import solve  # noqa: E402

__all__ = ["InfusimError", "Result", "Scenario", "__version__", "assemble", "from_dict", "load", "simulate", "solve"]

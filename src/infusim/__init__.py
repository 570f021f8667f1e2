"""infusim: a simulator of stem cell infusion therapy (research use only, not medical advice).

The public API in one screen::

    import infusim
    scenario = infusim.load("examples/msc-iv-human.yaml")   # validate a scenario file
    model = infusim.assemble(scenario)                       # declared whole-body transfer network
    result = infusim.simulate(scenario)                      # cells, observations and a summary
    result.to_pandas(), result.plot(), result.summary
    cohort = infusim.trial("examples/trial-copd.yaml", patients=200)   # a virtual trial
    infusim.power(scenario_or_path, [40, 80, 160]), infusim.validate()
    infusim.sensitivity(path, ["live_cells:lungs@24 h"]), infusim.doses(path, [1e6, 1e7, 1e8])
    infusim.cost_effectiveness(path, "out/trial")        # of a finished trial (economics section)
    infusim.bridge("rat.yaml", "human.yaml", "live_cells:target@7 day")   # a dose carried between species

Each takes a ``Scenario``, a mapping as read from YAML or a path, and returns a result object with
``summary``, ``to_pandas()``, ``plot()`` and ``write_report(path)`` (``infusim.results``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from infusim.api import bridge, cost_effectiveness, doses, power, sensitivity, trial, validate
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
    "bridge",
    "cost_effectiveness",
    "doses",
    "from_dict",
    "load",
    "power",
    "sensitivity",
    "simulate",
    "solve",
    "trial",
    "validate",
]

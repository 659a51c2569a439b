"""A simulated Asterisk 22 for call tracking: AMI server, inbound calls, FastAGI, MixMonitor.

Modules, by role:
- `messages`: AMI messages as values and their wire form.
- `call_plan`, `snapshots`, `call_setup`, `scenario`: pure builders of the event sequence of one
  inbound call, modelled on the captures in `fixtures/asterisk/` (see `call_setup`'s docstring
  for the differences).
- `channels`: live channels folded from the events (CoreShowChannels, Status, Getvar).
- `ami_server`: the TCP AMI server (logins, actions, event fan-out).
- `agi_client`: the Asterisk side of FastAGI.
- `recordings`: MixMonitor's WAV files.
- `calls`: one call run in (scaled) time; `sim`: `PbxSim`, the whole simulator.
- `control`: call specs, HTTP control, stdin commands, load profile; `command`: CLI flags.

Python API::

    sim = PbxSim(SimConfig(port=0, speed=20))
    await sim.start()
    placed = await sim.place_call(CallSpec(did="74951110001", caller="+79161234567"))
    result = await placed.finished
    await sim.stop()
"""

from calltracking.pbxsim.call_plan import HangupBy, Outcome
from calltracking.pbxsim.calls import CallResult, CallSpec, PlacedCall
from calltracking.pbxsim.command import add_arguments, run_from_args
from calltracking.pbxsim.control import run_load
from calltracking.pbxsim.sim import PbxSim, SimConfig

__all__ = [
    "CallResult",
    "CallSpec",
    "HangupBy",
    "Outcome",
    "PbxSim",
    "PlacedCall",
    "SimConfig",
    "add_arguments",
    "run_from_args",
    "run_load",
]

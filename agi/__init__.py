"""FastAGI service: `AGI(agi://TRACKER:4573/calltracking,${EXTEN})` resolves a call's attribution.

protocol.py   the wire format, pure: header block, quoting, reply lines, errors
channel.py    one connection's I/O: read the header, command -> reply, HANGUP lines
facts.py      pure: DID / caller / script from the header, variables from a Resolution
handler.py    the dialogue within its budget; the one-dialogue error boundary
server.py     the TCP service: accept, header under the budget, route, counters, stop
"""

from agi.handler import Outcome
from agi.server import AgiServer

__all__ = ["AgiServer", "Outcome"]

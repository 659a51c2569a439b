"""The AMI listener: follows an Asterisk's calls over AMI and reports them to the `CallRecorder`.

`AmiListener` (listener.py) owns the connection (connection.py, on panoramisk 1.4), the call state
machine (calltracking.core.callflow) and the recording watcher (recordings.py).
"""

from ami_listener.listener import AmiListener
from ami_listener.supervisor import ListenerHealth
from ami_listener.timings import Timings

__all__ = ["AmiListener", "ListenerHealth", "Timings"]

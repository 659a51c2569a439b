"""AMI events in, call facts out: the pure state machine behind the AMI listener (no I/O, no clock).

Events are plain mappings with Asterisk's header names, looked up without case. `now` is when the
adapter received the event. The rules, checked against the Asterisk 22 transcripts in
`fixtures/asterisk` (see tests/ami/test_callflow.py), are stated by the module that keeps them:

  facts       what comes out: CallStarted, CallAnswered, CallEnded, RecordingNamed, CallIgnored
  headers     reading event headers: case, event time, devices, snapshot durations
  call_state  one call's state and the rules that read it alone: start, DID, recording, status
  tracker     `CallTracker`: the calls of one Asterisk through live events, bridges and time
  reconcile   `CallFlow`: the tracker reconciled with CoreShowChannels and the recorder's open calls
"""

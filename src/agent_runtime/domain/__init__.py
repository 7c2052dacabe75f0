"""Pure domain: task, plan and step records, the state machine, event types. No I/O here."""

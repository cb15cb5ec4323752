"""Alert lifecycle and notifications.

* :mod:`~lianwatch.lifecycle.machine` — the state machine (open → rectifying →
  closed, dismissed, reopen, escalate), pure: history events in, state out.
* :mod:`~lianwatch.lifecycle.log` — the history in the store (``alert_history``),
  :class:`~lianwatch.lifecycle.log.Lifecycle` (act, observe, escalate),
  :func:`~lianwatch.lifecycle.log.load_history` for ``alerts show``.
* :mod:`~lianwatch.lifecycle.notify` — :class:`~lianwatch.lifecycle.notify.Notifier`:
  routing, grouping, digests, quiet hours, caps, repeats, retries.
* :mod:`~lianwatch.lifecycle.routing`, :mod:`~lianwatch.lifecycle.texts`,
  :mod:`~lianwatch.lifecycle.providers` (outbox, Aliyun, Tencent, and their configs),
  :mod:`~lianwatch.lifecycle.config` (policies).
* :mod:`~lianwatch.lifecycle.demo` — the demo's outbox step.

The ``alerts rectify|verify|dismiss|reopen|tick`` commands live with the CLI
(:mod:`lianwatch.commands.alert_actions`): nothing here imports the command line,
reads the environment or replays.
"""

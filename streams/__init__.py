"""Live streaming: Kafka topics in, alerts out (``lianwatch worker``, ``lianwatch produce``).

Contract and topics
    :mod:`.topics`        topic names, the subject families (:data:`~.topics.FAMILIES`,
                          per-stream facts from ``models.streams.SPECS``), partitioning,
                          topic creation
    :mod:`.ticks`         tick records and which tick times are believed (``TickWindow``)
    :mod:`.kafka_errors`  the one boundary where Kafka client errors become ``BrokerError``

The broker-independent core (one engine per input partition)
    :mod:`.batch`         a consumed message, a batch's output
    :mod:`.acks`          acks in offset order, the clocks as of the acked messages
    :mod:`.state`         the state backend, changed-state tracking, persisted clocks
    :mod:`.partition`     one partition: engine, event-time merge, end of data
    :mod:`.family`        all partitions of a family; the record and tick gate
    :mod:`.rekey`         fuel → fuel.by-vehicle
    :mod:`.checkpoint`    ``Checkpoint.commit()``: the at-least-once commit in five steps
    :mod:`.pipeline`      one batch → the engines → the sinks → a checkpoint when due
    :mod:`.sinks`         output topics and the store (through the retrying, spilling writer)
    :mod:`.resume`        where each input partition resumes after a rebalance
    :mod:`.worker_state`  the worker's flags and counters, its status file

The Faust worker
    :mod:`.config`        ``WorkerConfig``
    :mod:`.app`           ``build_app``: the Faust app, its topics, tables, agents, timers
    :mod:`.bulk`          the default input path: the assigned partitions fetched in bulk
    :mod:`.housekeeping`  flush ticks, idle exit, status file, stats
    :mod:`.tables`        a Faust table as the state backend
    :mod:`.faust_adapter` the only module that uses Faust internals (each one explained)
    :mod:`.ref`           reference data from the compacted ``ref.*`` topics

Publishing
    :mod:`.plan`          what ``lianwatch produce`` sends, in order (no broker)
    :mod:`.publisher`     a batching producer that rides out broker restarts
    :mod:`.producer`      ``publish_directory``
"""

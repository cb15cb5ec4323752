"""Live streaming: Kafka topics in, alerts out (``lianwatch worker``, ``lianwatch produce``).

:mod:`.topics`
    topic names, keys and partitioning, tick records, topic creation
:mod:`.producer`
    publishing a contract directory (reference first, events in event-time order)
:mod:`.ref`
    reference data from the compacted ``ref.*`` topics (a full copy per worker)
:mod:`.runtime`
    the broker-independent core: one engine per input partition, the event-time
    merge of a partition's inputs, ticks, end of data, state and ack bookkeeping
:mod:`.app`
    the Faust app: agents, tables, sinks, rebalances
"""

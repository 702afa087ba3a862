"""The queue itself: stored records and ops (records.py), and the job lifecycle rules that
turn an op into reads and writes of a transaction (core.py).

Pure: it imports neither aiohttp nor lmdb, has no clock of its own (time comes in each op)
and reaches storage only through the ``Tx``/``ReadTx`` interface of ``ports.py``. It may import
``tqd.config``, ``tqd.errors`` and ``tqd.protocol``; nothing above it.
"""

"""The queue itself: stored records (records.py), the ops that change them and what each
answers (ops.py), and the job lifecycle rules that
turn an op into reads and writes of a transaction: core.py (``Core``: dispatch and reads)
over lifecycle.py (enqueue, lease, ack, fail, heartbeat, release), admin.py (cancel, retry,
redrive, purge, pause, delete queue) and timers.py (delays, lease expiry, retention);
validate.py holds the rules for what a valid job and request are.

Pure: it imports neither aiohttp nor lmdb, has no clock of its own (time comes in each op)
and reaches storage only through the ``WriteTx``/``ReadView`` protocols of ports.py. It may
import ``tqd.config``, ``tqd.errors`` and ``tqd.protocol``; nothing above it (import-linter
holds this in CI).
"""

"""The one writer: group commit of ops into LMDB transactions, parked long-poll leases
(writer.py), and the writer's own process with its link to the server (process.py).

It drives ``tqd.queue`` over ``tqd.storage``; it knows nothing of HTTP.
"""

"""HTTP: the aiohttp app with its route table (which marks the writes) and thin /v1 handlers
(app.py), request body reading with limits, decoding and timeouts (body.py), and the
connection level: header timeout, connection limit, JSON answers to parser refusals, the
raised fd limit (conn.py).

A handler decodes, checks the request with the queue's rules (tqd.queue.validate), makes one
call into ``tqd.service``, encodes. No queue rule lives here, and nothing here reaches the
writer or the store but through the service (import-linter holds this in CI).
"""

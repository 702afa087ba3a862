"""HTTP: the aiohttp app with its route table and thin /v1 handlers (app.py), and request
body reading with limits, decoding and timeouts (body.py).

A handler decodes, makes one call into ``tqd.service``, encodes. No queue rule lives here.
"""

"""The web dashboard: static files only (``static/``), served at ``/ui`` by tqd.http.ui.

Plain ES modules, one stylesheet and one HTML page, written by hand: no build step, nothing
fetched from elsewhere at run time, no data in the files (the page reads the JSON API,
with the user's token when the server runs with ``--auth``). This package holds no Python
code and imports nothing.

The modules of ``static/``: ``app.js`` (router, header, start), ``api.js`` (fetch with the
token; asks for one on 401), ``live.js`` (the event stream read with fetch, resumed with
Last-Event-ID; polling where the server has none), ``charts.js`` (SVG charts),
``history.js`` (the charts' samples), ``dialogs.js`` (confirmation, token prompt, notices),
``util.js`` (DOM and formatting), and one module per page: ``overview.js``, ``queue.js``,
``job.js``. tests/test_ui.py drives them in a real browser.
"""

"""The one read path: every read the JSON API and the web view make, once.

The API routes (``api/``) and the pages (``web/views/``) call these same functions; a
page adds only presentation (datasette's one ``data()`` feeding JSON and HTML). The
store (:mod:`judgeserve.store`) owns the tables, the engine and the writes.

Every function takes a :class:`~sqlalchemy.engine.Connection` first, so a page makes
all its reads on one connection (``with connect(store) as conn: ...``); a
:class:`~judgeserve.store.Store` or an ``Engine`` works too, for a single read on a
connection of its own. Database errors become :class:`StoreUnavailable` (HTTP 503, in
one place) or :class:`StoreError`. Every list is bounded (``LIMIT``) and walks an index
the store has, so a page costs the same for a run of ten steps as for one of thousands
and 100k+ samples.

Dead letters live in Redis, not the database: :func:`deadletters` reads them through
the process's :class:`~judgeserve.stream.Queue`.

* :mod:`.core` — runs, steps, samples, alerts, checkpoint jobs, tokens, dead letters.
* :mod:`.labels` — human labels, the judge verdicts they are compared with, calibration
  reports.

Every public name of the modules is a name of this package (``read.step_samples``).
"""

from . import core, labels
from .core import *  # noqa: F403
from .labels import *  # noqa: F403

__all__ = [*core.__all__, *labels.__all__]

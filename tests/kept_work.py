"""What a run stopped by a signal keeps to be resumed (issue 20), removed by a test that checks
the rest of what the run left: shared by the failure tests of the pool and of a cluster."""

from __future__ import annotations

import re
from pathlib import Path


def discard_kept(stderr: str) -> Path | None:
    """Remove the journal a run stopped by a signal names in its message (it keeps its finished
    work to be resumed: issue 20), the files it keeps, its pointer and the records that name
    it; the journal's path (None: the run kept nothing)."""
    from eoscale.engine.scratch import forget_journal
    from eoscale.io.journal import read_journal
    from eoscale.io.runfiles import parts_of

    found = re.search(r"\(journal (\S+\.journal)\)", stderr)
    if found is None:
        return None
    journal = Path(found.group(1))
    for path in read_journal(journal).files:
        for name in (path, *parts_of(path)):
            name.unlink(missing_ok=True)
    journal.unlink()
    forget_journal(journal)  # its pointer, and the records that name it
    return journal

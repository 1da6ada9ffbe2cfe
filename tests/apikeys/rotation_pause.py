"""Imported by the real Celery worker of test_worker_kill (``celery worker -I tests.apikeys.rotation_pause``),
never by the test process: it pauses the first rotation the worker makes, in the middle of its
transaction, so the test can kill the pool process there.

The first rotation to reach apikeys.signals.rotation_in_progress writes its process id to the file
that IDP_TEST_ROTATION_PAUSE_FILE names and then sleeps until it is killed; once that file exists,
rotations go on at once. Without the variable it does nothing.
"""

from __future__ import annotations

import os
import time
from typing import Any

from apikeys.signals import rotation_in_progress

PAUSE_FILE_VARIABLE = "IDP_TEST_ROTATION_PAUSE_FILE"


def pause_the_first_rotation(sender: Any, **kwargs: Any) -> None:
    path = os.environ.get(PAUSE_FILE_VARIABLE)
    if not path or os.path.exists(path):
        return
    # Written aside and renamed into place, so the test never reads a half-written pid.
    with open(f"{path}.tmp", "w") as pid_file:
        pid_file.write(str(os.getpid()))
    os.replace(f"{path}.tmp", path)
    while True:
        time.sleep(60)


rotation_in_progress.connect(pause_the_first_rotation, dispatch_uid="tests.apikeys.rotation_pause")

"""Half a point per file with the right mode and owner; the task passes at 1."""

import json
import stat
from pathlib import Path

wanted = {"/opt/deploy/run.sh": 0o755, "/opt/deploy/secret.env": 0o600}
score = 0.0
for path, mode in wanted.items():
    try:
        info = Path(path).stat()
    except OSError:
        continue
    if stat.S_IMODE(info.st_mode) == mode and info.st_uid == 1000:
        score += 0.5
print(json.dumps({"reward": score}))

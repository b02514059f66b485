#!/bin/bash
source /tests/lib.sh
reward 0
diff -q "$EXPECTED_LIST" /workspace/docs/INDEX.txt && [ "$(cat /root/md-count)" = 3 ] && reward 1
true

#!/bin/bash
want="$(sha256sum /workspace/blob.bin | cut -d' ' -f1)"
got="$(tr -d '[:space:]' < /workspace/blob.sha256 2>/dev/null)"
[ "$want" = "$got" ] && echo 1 > /logs/verifier/reward.txt || echo 0 > /logs/verifier/reward.txt

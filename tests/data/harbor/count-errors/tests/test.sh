#!/bin/bash
# The count must be right, and the build's own file must still be there.
if [ "$(cat /srv/shop/report/errors.txt 2>/dev/null | tr -d '[:space:]')" = "3" ] && [ -s report/levels.txt ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi

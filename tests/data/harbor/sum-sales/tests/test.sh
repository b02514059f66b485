#!/bin/bash
answer="$(tr -d '[:space:]' < /app/answer.txt 2>/dev/null)"
if [ "$answer" = "42" ]; then echo 1; else echo 0; fi > /logs/verifier/reward.txt

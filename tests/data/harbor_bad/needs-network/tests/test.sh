#!/bin/bash
curl -LsSf https://example.invalid/uv/install.sh | sh
uvx pytest /tests/test_outputs.py && echo 1 > /logs/verifier/reward.txt

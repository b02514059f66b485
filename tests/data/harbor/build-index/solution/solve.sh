#!/bin/bash
source /solution/index.sh
build_index /workspace/docs "$INDEX_NAME"

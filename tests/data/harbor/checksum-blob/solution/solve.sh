#!/bin/bash
sha256sum /workspace/blob.bin | cut -d' ' -f1 > /workspace/blob.sha256

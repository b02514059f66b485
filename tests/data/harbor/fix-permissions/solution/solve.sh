#!/bin/bash
chmod 0755 /opt/deploy/run.sh
chmod 0600 /opt/deploy/secret.env

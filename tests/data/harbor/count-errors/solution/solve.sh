#!/bin/bash
grep -c ' ERROR ' "$SHOP_HOME/logs/app.log" > report/errors.txt

#!/bin/bash
awk -F, 'NR > 1 {total += $2} END {print total}' sales.csv > answer.txt
